"""Every CPU format of the shipped model, in one run: the paper's table 5 and figure 9.

Exports Lite0 (5 classes, at the shipped 75 % resolution) to every format that runs here,
benchmarks each at batch 1 in its own process on --threads cores, and reports p50
latency, inferences/s and the speed-up of the fastest format over PyTorch eager FP32.
Without --bundle it builds Lite0 with ImageNet weights (random head): fine for speed;
pass the trained bundle for the shipped numbers. INT8 calibrates on real images (the
manifest's train split, or TrashNet photos), never on random data.

    python benchmarks/bench_engines.py --threads 2 --iters 300
    python benchmarks/bench_engines.py --bundle runs/lite0/best.safetensors --calib-manifest runs/data/manifest.json
    python benchmarks/bench_engines.py --bundle best.safetensors --resolutions 50 75 100 --formats openvino-int8

With several ``--resolutions`` the same weights are exported at each input size (the
network is fully convolutional) and results go to ``engines_<pct>.json`` per size.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

from wastenet.accelerate.bench import bench_one, markdown, write_results
from wastenet.accelerate.export import CalibSource, export_bundle
from wastenet.classes import CLASSES, input_size_for
from wastenet.provenance import provenance

HERE = Path(__file__).resolve().parent
CPU_FORMATS = ["onnx", "onnx-fp16", "ort-int8", "openvino", "openvino-int8"]
DEFAULT_IMAGES = HERE.parent.parent / "shared" / "data" / "trashnet"


def make_bundle(path: Path, arch: str, resolution_pct: float) -> Path:
    """A Lite0 bundle at the given resolution (ImageNet weights when available)."""
    from wastenet.meta import BundleMeta
    from wastenet.models import create_model, default_config, save_bundle

    try:
        model = create_model(arch, len(CLASSES), pretrained=True)
    except Exception:  # offline without the weights package: speed does not depend on them
        model = create_model(arch, len(CLASSES), pretrained=False)
    cfg = default_config(arch)
    h, w = input_size_for(resolution_pct)
    meta = BundleMeta(arch, list(CLASSES), [h, w], list(cfg["mean"]), list(cfg["std"]),
                      resolution_pct=resolution_pct)  # fmt: skip
    return save_bundle(model, meta, path)


def at_resolution(bundle: Path, pct: float, path: Path) -> Path:
    """The same weights with the input size of ``pct`` % resolution (for a speed sweep)."""
    import dataclasses

    from wastenet.models import load_bundle, save_bundle

    model, meta = load_bundle(bundle)
    h, w = input_size_for(pct)
    return save_bundle(
        model, dataclasses.replace(meta, input_size=[h, w], resolution_pct=pct), path
    )


def run_one(args, bundle: Path, work: Path, stem: str) -> None:
    calib = CalibSource(manifest=args.calib_manifest,
                        folder=None if args.calib_manifest else args.calib_images)  # fmt: skip
    options = {"calib_count": args.calib_count, "max_drop": args.max_drop}
    results = export_bundle(bundle, args.formats, work, options, calib)
    paths = [bundle] + [r.path for r in results if r.status == "ok" and r.format != "torch"]
    skipped = {r.format: r.reason for r in results if r.status != "ok"}
    rows = [bench_one(p, args.threads, args.warmup, args.iters) for p in paths]
    eager = next(r for r in rows if r["format"] == "torch")
    fastest = min(rows, key=lambda r: r["p50_ms"])
    summary = {
        "bundle": str(bundle),
        "cpu": platform.processor() or platform.machine(),
        "threads": args.threads,
        "iters": args.iters,
        "fastest": fastest["format"],
        "fastest_p50_ms": fastest["p50_ms"],
        "fastest_ips_p50": fastest["ips_p50"],
        "speedup_vs_eager": eager["p50_ms"] / fastest["p50_ms"],
        "skipped": skipped,
        "exports": [r.to_dict() for r in results],
    }
    files = write_results(rows, args.out, stem=stem)
    data = json.loads(files["json"].read_text())
    files["json"].write_text(
        json.dumps({**data, "summary": summary, "provenance": provenance()}, indent=2, default=str)
    )
    print(markdown(rows))
    print(
        f"\nfastest: {fastest['format']} p50 {fastest['p50_ms']:.2f} ms "
        f"({fastest['ips_p50']:.0f} IPS), {summary['speedup_vs_eager']:.1f}x over eager FP32"
    )
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    print(f"written: {', '.join(str(p) for p in files.values() if p)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="trained .safetensors (default: build Lite0)")
    parser.add_argument("--arch", default="efficientnet_lite0")
    parser.add_argument("--resolution", type=float, default=75.0)
    parser.add_argument("--resolutions", type=float, nargs="+", help="a sweep of input sizes (%%)")
    parser.add_argument("--formats", nargs="+", default=CPU_FORMATS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--calib-manifest", type=Path)
    parser.add_argument("--calib-images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--calib-count", type=int, default=200)
    parser.add_argument("--max-drop", type=float, help="accuracy-controlled openvino-int8 (points)")
    parser.add_argument("--work", type=Path, help="where artifacts go (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="wastenet-bench-"))
    bundle = args.bundle or make_bundle(work / "lite0.safetensors", args.arch, args.resolution)
    if not args.resolutions:
        run_one(args, bundle, work, "engines")
        return
    for pct in args.resolutions:
        sub = work / f"r{pct:g}"
        sub.mkdir(parents=True, exist_ok=True)
        print(f"\n## {pct:g} % resolution {input_size_for(pct)}")
        run_one(
            args, at_resolution(bundle, pct, sub / "lite0.safetensors"), sub, f"engines_{pct:g}"
        )


if __name__ == "__main__":
    main()
