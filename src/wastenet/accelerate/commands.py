"""``wastenet export``, ``wastenet verify`` and ``wastenet bench``."""

from __future__ import annotations

import argparse
from pathlib import Path

from wastenet.errors import ConfigError, ExitCode

EXPORT_EPILOG = """examples:
  wastenet export --list
  wastenet export runs/lite0/best.safetensors --format onnx --format openvino
  wastenet export runs/lite0/best.safetensors --format ort-int8 --format openvino-int8 \\
      --calib-manifest runs/data/manifest.json --calib-count 200 --calib-method entropy
  wastenet export best.safetensors --format ort-int8 --calib-manifest m.json --exclude first,last
  wastenet export best.safetensors --format openvino-int8 --calib-manifest m.json --max-drop 0.3
  wastenet export best.safetensors --format tensorrt-fp16 --workspace 33554432

Artifacts go beside the bundle (or into --out) as <stem><suffix>; every one carries
the bundle metadata and the bundle's sha256. INT8 formats calibrate on real images
from the manifest's train split (or --calib-images FOLDER), never on random data; of
the sources the model was trained on only, so a source held out of training stays unseen.
--exclude keeps layers in float: node names, 'first', 'last', or 'auto' (drop the
noisiest layers until INT8 agrees with FP32 on the calibration images).
--max-drop (openvino-int8) measures top-1 on the manifest's val split (the model's
training sources) and returns the
costliest layers to float until INT8 is within that many points of FP32.
"""

VERIFY_EPILOG = """examples:
  wastenet verify runs/lite0/best.int8.onnx runs/lite0/best.int8.xml --manifest runs/data/manifest.json
  wastenet verify model.fp16.onnx --manifest m.json --reference best.safetensors --max-drop 0.5
  wastenet verify runs/lite0/export/model.int8.onnx --manifest m.json --split val test

Exits 5 when an artifact's accuracy falls more than --max-drop points below its
source bundle's on the split(s) scored. Writes verify.json and verify.md into --out (default: beside the first).
"""

BENCH_EPILOG = """examples:
  wastenet bench runs/lite0/best.safetensors runs/lite0/best.onnx runs/lite0/best.int8.xml
  wastenet bench runs/lite0/best.*.onnx --threads 2 --iters 500 --out runs/lite0/bench

Each artifact runs alone in a subprocess at batch 1. Writes bench.json, bench.md
(a table like the paper's table 5) and bench.png (inferences/s, like figure 9).
"""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    _register_export(subparsers, formatter_class)
    _register_verify(subparsers, formatter_class)
    _register_bench(subparsers, formatter_class)


def _register_export(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a bundle to ONNX / INT8 / OpenVINO / TensorRT",
        description="Export a model bundle to the formats of the format table.",
        formatter_class=formatter_class,
        epilog=EXPORT_EPILOG,
    )
    p.add_argument(
        "bundle",
        nargs="?",
        type=Path,
        help="the .safetensors model bundle, or an FP32 .onnx for the engines made "
        "from ONNX (INT8, FP16, OpenVINO, TensorRT)",
    )
    p.add_argument("--format", action="append", dest="formats", metavar="NAME",
                   help="a format name (repeat for several; see --list)")  # fmt: skip
    p.add_argument("--list", action="store_true", help="print the format table and exit")
    p.add_argument("--out", type=Path, help="output folder (default: beside the bundle)")
    p.add_argument("--calib-manifest", type=Path, help="manifest whose train split calibrates INT8")
    p.add_argument("--calib-images", type=Path, help="or a folder of real images")
    p.add_argument("--calib-count", type=int, help="calibration images (default 200)")
    p.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"))
    p.add_argument("--exclude", help="INT8 layers kept in float: names, first, last, or auto")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="openvino-int8: keep layers in float until val top-1 drops <= POINTS")  # fmt: skip
    p.add_argument("--workspace", type=int, help="TensorRT workspace bytes (default 1<<25)")
    p.add_argument("--input-shape", help="TensorRT input shape NxCxHxW (default from bundle)")
    p.set_defaults(func=cmd_export)


def _register_verify(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "verify",
        help="test-set accuracy of artifacts next to their source bundle",
        description="Accuracy, top-1 agreement and max probability difference of each "
        "artifact against the bundle it was made from; fails past --max-drop.",
        formatter_class=formatter_class,
        epilog=VERIFY_EPILOG,
    )
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT")
    p.add_argument("--manifest", type=Path, required=True, help="split manifest")
    p.add_argument(
        "--split",
        nargs="+",
        default=["test"],
        choices=("test", "val", "train"),
        help="split(s) to score, pooled (e.g. --split val test)",
    )
    p.add_argument("--max-drop", type=float, default=0.3, help="allowed accuracy drop (points)")
    p.add_argument("--reference", type=Path, help="source bundle (default: found by hash)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: runtime default)")
    p.add_argument("--out", type=Path, help="report folder (default: beside the first artifact)")
    p.set_defaults(func=cmd_verify)


def _register_bench(subparsers, formatter_class) -> None:
    p = subparsers.add_parser(
        "bench",
        help="latency, throughput, memory and size of artifacts at batch 1",
        description="Benchmark each artifact or bundle in its own process.",
        formatter_class=formatter_class,
        epilog=BENCH_EPILOG,
    )
    p.add_argument("artifacts", nargs="+", type=Path, metavar="ARTIFACT_OR_BUNDLE")
    p.add_argument("--threads", type=int, default=2, help="inference threads")
    p.add_argument("--warmup", type=int, default=20, help="untimed runs first")
    p.add_argument("--iters", type=int, default=300, help="timed runs")
    p.add_argument("--out", type=Path, help="results folder (default: beside the first)")
    p.set_defaults(func=cmd_bench)


def cmd_export(args: argparse.Namespace) -> int:
    from wastenet.accelerate.formats import format_table

    if args.list:
        print(format_table())
        return 0
    if args.bundle is None:
        raise ConfigError("give a .safetensors bundle to export (or --list)")
    if not args.bundle.is_file():
        raise ConfigError(f"{args.bundle}: no such model file")
    from wastenet.accelerate.export import CalibSource, export_bundle, export_onnx_artifact

    options = {
        "calib_count": args.calib_count,
        "calib_method": args.calib_method,
        "exclude": args.exclude,
        "max_drop": args.max_drop,
        "workspace": args.workspace,
        "input_shape": args.input_shape,
    }
    calib = CalibSource(manifest=args.calib_manifest, folder=args.calib_images)
    export = export_onnx_artifact if args.bundle.suffix == ".onnx" else export_bundle
    results = export(args.bundle, args.formats or [], args.out, options, calib)
    for r in results:
        where = r.path if r.status == "ok" else r.reason
        print(f"{r.format:15s} {r.status:8s} {where}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from wastenet.accelerate.verify import markdown, verify, write_reports

    rows = verify(args.artifacts, args.manifest, args.split, args.max_drop, args.reference,
                  args.threads)  # fmt: skip
    out = args.out or args.artifacts[0].parent
    js, _ = write_reports(rows, out, args.max_drop)
    print(markdown(rows, args.max_drop))
    print(f"\nwritten: {js} (+ .md)")
    return ExitCode.OK if all(r.passed for r in rows) else ExitCode.CHECK_FAILED


def cmd_bench(args: argparse.Namespace) -> int:
    from wastenet.accelerate.bench import bench_one, markdown, write_results

    rows = []
    for path in args.artifacts:
        if not path.exists():
            raise ConfigError(f"{path}: no such artifact")
        rows.append(bench_one(path, args.threads, args.warmup, args.iters))
    paths = write_results(rows, args.out or args.artifacts[0].parent)
    print(markdown(rows))
    print(f"\nwritten: {', '.join(str(p) for p in paths.values() if p)}")
    return 0
