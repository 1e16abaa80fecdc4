"""OpenVINO at batch 1: the exported dynamic-batch IR against the same IR reshaped to a
static 1x3xHxW (what ``OpenVinoEngine`` now compiles), interleaved rounds, medians.

    python benchmarks/bench_openvino_static.py model.int8.xml --rounds 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from wastenet.provenance import provenance


def p50_ms(core, path: str, static: bool, threads: int, iters: int, hw: tuple[int, int]) -> float:
    model = core.read_model(path)
    if static:
        model.reshape([1, 3, *hw])
    return latency_p50_ms(model, threads, iters, core)


def latency_p50_ms(model, threads: int, iters: int, core=None) -> float:
    """Median batch-1 latency of an OpenVINO model on one stream of ``threads`` threads."""
    import openvino as ov

    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        "INFERENCE_NUM_THREADS": str(threads),
    }
    compiled = (core or ov.Core()).compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random(list(compiled.input(0).get_shape()), dtype=np.float32)
    for _ in range(20):
        request.infer({0: x})
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        request.infer({0: x})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    import openvino as ov

    from wastenet.accelerate.backends.openvino_backend import read_meta, read_model

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/openvino_static.json")
    args = parser.parse_args()
    meta = read_meta(read_model(Path(args.model)), Path(args.model))
    core = ov.Core()
    rounds = []
    for _ in range(args.rounds):
        row = {
            kind: p50_ms(core, args.model, kind == "static", args.threads, args.iters,
                         (meta.height, meta.width))
            for kind in ("dynamic", "static")
        }  # fmt: skip
        rounds.append(row)
        print(f"dynamic {row['dynamic']:.2f} ms   static {row['static']:.2f} ms", flush=True)
    result = {
        "model": args.model,
        "threads": args.threads,
        "rounds": rounds,
        "median_dynamic_ms": float(np.median([r["dynamic"] for r in rounds])),
        "median_static_ms": float(np.median([r["static"] for r in rounds])),
        "static_faster_in_rounds": sum(r["static"] < r["dynamic"] for r in rounds),
    }
    Path(args.out).write_text(json.dumps({**result, "provenance": provenance()}, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rounds"}, indent=1))


if __name__ == "__main__":
    main()
