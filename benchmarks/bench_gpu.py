"""PyTorch on a CUDA GPU: inference latency and training throughput of a bundle's model.

Run on a machine with an NVIDIA GPU (results/gpu_h100.json came from this on an H100):
    python benchmarks/bench_gpu.py MODEL.safetensors --out benchmarks/results/gpu.json

Inference at batch 1 (p50/p95 over --iters calls, after warm-up):
  - engine FP32: ``TorchEngine.predict`` on a NumPy batch, host copies and softmax included
    (what ``wastenet evaluate`` and the bin get);
  - FP32 and FP16 compute only: input already on the GPU, channels-last, synchronised.
Throughput at batch 32 for FP32 and FP16. Training steps (forward + backward + Adam) at
batch 16, the paper's batch, with autocast off, bf16 and fp16. It also records whether
TensorRT can be imported and which ONNX Runtime providers exist, so a missing TensorRT
row has its reason on record.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from wastenet.provenance import provenance


def runtime_probe() -> dict:
    out = {}
    try:
        import tensorrt

        out["tensorrt"] = tensorrt.__version__
    except Exception as exc:  # ImportError, or a broken install
        out["tensorrt"] = f"not importable: {type(exc).__name__}: {exc}"[:200]
    try:
        import onnxruntime as ort

        out["onnxruntime"] = ort.__version__
        out["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as exc:
        out["onnxruntime"] = f"not importable: {exc}"[:200]
    return out


def timed(fn, iters: int, warmup: int, sync) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return times


def summary(times_ms: list[float], batch: int) -> dict:
    p50 = statistics.median(times_ms)
    return {
        "batch": batch,
        "p50_ms": round(p50, 3),
        "p95_ms": round(float(np.percentile(times_ms, 95)), 3),
        "images_per_s": round(batch * 1000 / p50, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a .safetensors bundle")
    parser.add_argument("--out", default="benchmarks/results/gpu.json")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a quick check")
    args = parser.parse_args()

    import torch

    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.models import load_bundle

    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu: no CUDA GPU here (--device cpu for a quick check)")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model, meta = load_bundle(args.model)
    h, w = meta.height, meta.width
    result = {
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": meta.architecture,
        "input": [h, w],
        **runtime_probe(),
    }
    rng = np.random.default_rng(0)
    x1 = rng.standard_normal((1, 3, h, w)).astype(np.float32)

    engine = TorchEngine.from_model(model, meta, args.model, device=str(dev))
    result["engine_fp32_b1"] = summary(
        timed(lambda: engine.predict(x1), args.iters, min(20, args.iters), sync), 1
    )

    net = model.eval().to(dev).to(memory_format=torch.channels_last)
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        m = net.to(dtype)  # in place: the FP16 pass converts the same module
        for batch in (1, 32):
            x = torch.from_numpy(rng.standard_normal((batch, 3, h, w)).astype(np.float32))
            x = x.to(dev, dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                times = timed(
                    lambda m=m, x=x: m(x),
                    args.iters if batch == 1 else max(2, args.iters // 4),
                    min(20, args.iters),
                    sync,
                )
            result[f"compute_{name}_b{batch}"] = summary(times, batch)

    from wastenet.models import create_model

    for name, amp in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        m = create_model(meta.architecture, len(meta.labels), pretrained=False)
        m = m.to(dev).to(memory_format=torch.channels_last).train()
        opt = torch.optim.Adam(m.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
        x = torch.randn(16, 3, h, w, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, len(meta.labels), (16,), device=dev)

        def step(m=m, opt=opt, scaler=scaler, x=x, y=y, amp=amp):
            with torch.autocast(dev.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()

        result[f"train_{name}_b16"] = summary(
            timed(step, args.train_steps, min(5, args.train_steps), sync), 16
        )
    if dev.type == "cuda":
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**result, "provenance": provenance()}, indent=1))
    print(f"| {result['gpu']} | batch | p50 ms | images/s |")
    print("| --- | ---: | ---: | ---: |")
    for key, row in result.items():
        if isinstance(row, dict) and "p50_ms" in row:
            print(f"| {key} | {row['batch']} | {row['p50_ms']} | {row['images_per_s']} |")


if __name__ == "__main__":
    main()
