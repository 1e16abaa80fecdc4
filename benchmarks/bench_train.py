"""Training throughput of the shipped architecture on this machine, bf16 autocast on and off.

Run: python benchmarks/bench_train.py [--model efficientnet_lite0] [--size 75%] [--steps 6]
Times forward + backward + Adam step at batch 16 (median of the timed steps after two
warm-up steps), channels-last, for each setting in one process, so the ratio is fair.
Writes benchmarks/results/train.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from wastenet.classes import CLASSES, DEFAULT_INPUT_SIZE, size_text
from wastenet.data.cache import parse_size
from wastenet.models import create_model
from wastenet.provenance import provenance
from wastenet.train.freeze import set_trainable_units
from wastenet.train.setup import cpu_has_fast_bf16

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"


def time_steps(model, x, y, steps: int, amp: torch.dtype | None) -> float:
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=amp, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--size", default=size_text(DEFAULT_INPUT_SIZE), help="HxW or PCT%%")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    h, w = parse_size(args.size)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, len(CLASSES), (args.batch,))
    rows = []
    settings = [
        ("fp32", None, 0),
        ("bf16 autocast", torch.bfloat16, 0),
        ("fp32, first 4 units frozen", None, 4),
    ]
    for name, amp, frozen in settings:
        model = create_model(args.model, 5, pretrained=False).to(memory_format=torch.channels_last)
        set_trainable_units(model, frozen)
        model.train()
        step = time_steps(model, x, y, args.steps, amp)
        rows.append({"setting": name, "step_s": step, "images_per_s": args.batch / step})
    result = {
        "model": args.model,
        "size_hw": [h, w],
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "torch": torch.__version__,
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**result, "provenance": provenance()}, indent=2))
    print(f"| setting ({args.model}, batch {args.batch}, {h}x{w}) | step (s) | images/s |")
    print("| --- | ---: | ---: |")
    for row in rows:
        print(f"| {row['setting']} | {row['step_s']:.2f} | {row['images_per_s']:.1f} |")


if __name__ == "__main__":
    main()
