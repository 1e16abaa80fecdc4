"""How fast can this CPU go? The multiply-accumulates a model needs per inference, and the
rate OpenVINO reaches on compute-bound probes (dense 1x1 convolutions, Lite0's bulk) and on
depthwise 3x3 convolutions, in FP32 and INT8, at batch 1.

    python benchmarks/bench_cpu_ceiling.py model.xml --target-ips 250 --threads 2

The model's MACs times the target rate is the rate the engine would have to sustain; if the
best probe (a layer far friendlier than the model's mix) stays below it, no engine reaches
the target on this machine at this resolution.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench_openvino_static import latency_p50_ms
from wastenet.provenance import provenance


def conv_macs(model_path: str) -> dict[str, float]:
    """MACs per inference (batch 1) of a model's convolutions and matrix products, by kind,
    from OpenVINO's view of the graph with the batch fixed to 1."""
    import openvino as ov

    model = ov.Core().read_model(model_path)
    shape = model.input(0).get_partial_shape()
    shape[0] = 1
    model.reshape({model.input(0): shape})
    out = {"dense_conv": 0.0, "depthwise_conv": 0.0, "fully_connected": 0.0}
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        weight = list(op.input(1).get_shape())
        produced = list(op.output(0).get_shape())
        if kind == "MatMul":
            out["fully_connected"] += float(np.prod(produced)) * float(op.input(0).get_shape()[-1])
        elif kind == "GroupConvolution":  # weights: groups, out/group, in/group, kh, kw
            out["depthwise_conv"] += float(np.prod(produced[1:])) * float(np.prod(weight[2:]))
        else:  # weights: out, in, kh, kw
            out["dense_conv"] += float(np.prod(produced[1:])) * float(np.prod(weight[1:]))
    out["total"] = sum(out.values())
    return out


def probe_model(kind: str, channels: int, hw: tuple[int, int], depth: int):
    """An OpenVINO model of ``depth`` convolutions of one kind, and its MACs."""
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, channels, *hw], np.float32, name="x")
    y = x
    for _ in range(depth):
        if kind == "pointwise":
            w = rng.normal(0, 0.05, (channels, channels, 1, 1)).astype(np.float32)
            y = ops.convolution(y, ops.constant(w), [1, 1], [0, 0], [0, 0], [1, 1])
        else:
            w = rng.normal(0, 0.2, (channels, 1, 1, 3, 3)).astype(np.float32)
            y = ops.group_convolution(y, ops.constant(w), [1, 1], [1, 1], [1, 1], [1, 1])
        y = ops.clamp(y, 0.0, 6.0)
    per_layer = channels * hw[0] * hw[1] * (channels if kind == "pointwise" else 9)
    return ov.Model([y], [x], kind), float(per_layer * depth)


def quantize(model, shape: list[int]):
    import nncf

    rng = np.random.default_rng(1)
    data = [rng.random(shape, dtype=np.float32) * 6 for _ in range(8)]
    return nncf.quantize(model, nncf.Dataset(data), subset_size=8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model (ONNX or OpenVINO IR) whose MACs set the rate")
    parser.add_argument("--target-ips", type=float, default=250.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=100)
    parser.add_argument(
        "--probe",
        action="append",
        metavar="KIND:CHANNELS:H:W:DEPTH",
        help="pointwise or depthwise convolutions (repeat; default: a few Lite0-like shapes)",
    )
    parser.add_argument("--out", default="benchmarks/results/cpu_ceiling.json")
    args = parser.parse_args()

    macs = conv_macs(args.model)
    need = macs["total"] * args.target_ips / 1e9
    print(
        f"{args.model}: {macs['total'] / 1e9:.3f} GMAC per inference (dense conv "
        f"{macs['dense_conv'] / 1e9:.3f}, depthwise {macs['depthwise_conv'] / 1e9:.3f}); "
        f"{args.target_ips:.0f}/s needs {need:.0f} GMAC/s"
    )
    rows = []
    specs = args.probe or [
        "pointwise:96:72:96:4",
        "pointwise:480:18:24:8",
        "pointwise:1152:9:12:8",
        "depthwise:144:72:96:4",
    ]
    for spec in specs:
        kind, channels, h, w, depth = spec.split(":")
        channels, hw, depth = int(channels), (int(h), int(w)), int(depth)
        model, probe_macs = probe_model(kind, channels, hw, depth)
        for precision in ("FP32", "INT8"):
            target = quantize(model, [1, channels, *hw]) if precision == "INT8" else model
            ms = latency_p50_ms(target, args.threads, args.iters)
            rate = probe_macs / ms / 1e6
            rows.append(
                {
                    "probe": f"{depth}x {kind} {channels}ch {hw[0]}x{hw[1]}",
                    "precision": precision,
                    "p50_ms": round(ms, 3),
                    "gmac_per_s": round(rate, 1),
                }
            )
            print(f"{rows[-1]['probe']:>32} {precision}: {ms:7.3f} ms  {rate:6.1f} GMAC/s")
    best = max(r["gmac_per_s"] for r in rows)
    result = {
        "model": args.model,
        "threads": args.threads,
        "macs": macs,
        "target_ips": args.target_ips,
        "needed_gmac_per_s": round(need, 1),
        "probes": rows,
        "best_probe_gmac_per_s": best,
        "ips_ceiling_at_best_probe_rate": round(best * 1e9 / macs["total"], 1),
    }
    print(
        f"best probe {best:.0f} GMAC/s -> at most {result['ips_ceiling_at_best_probe_rate']:.0f} "
        f"inferences/s for this model, if every layer ran at the best probe's rate"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**result, "provenance": provenance()}, indent=2))


if __name__ == "__main__":
    main()
