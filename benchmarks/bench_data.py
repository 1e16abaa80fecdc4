"""Data-loading throughput (cache read + augmentation) versus CPU training throughput.

Run: python benchmarks/bench_data.py [--manifest runs/data/manifest.json]
Writes benchmarks/results/data.json and prints a Markdown table. The data side uses
2 worker processes (the machine's 2 cores), reading the uint8 memmap cache and
augmenting; the training side times tf_efficientnet_lite0 (5 classes, random init)
forward + backward + Adam step, batch 16 at the shipped model's input size, median of
timed steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wastenet.classes import DEFAULT_INPUT_SIZE, size_text
from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"
SIZE = DEFAULT_INPUT_SIZE


def _worker(args: tuple) -> int:
    items, size, cache_dir, preset_name, indices, seed = args
    from wastenet.data.augment import Augmenter, preset
    from wastenet.data.cache import ImageCache

    cache = ImageCache(items, size, cache_dir, workers=1, progress=False)
    aug = Augmenter(preset(preset_name))
    rng = np.random.default_rng(seed)
    checksum = 0
    for i in indices:
        out = aug(np.array(cache[i]), rng)  # copy out of the memmap, like a loader does
        checksum += int(out[0, 0, 0])
    return checksum


def data_throughput(items, cache_dir, preset_name: str, n: int, workers: int = 2) -> float:
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(items), n)
    chunks = np.array_split(idx, workers)
    jobs = [(items, SIZE, cache_dir, preset_name, c.tolist(), k) for k, c in enumerate(chunks)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(_worker, [(items, SIZE, cache_dir, preset_name, [0], 9)] * workers))
        t0 = time.perf_counter()
        list(pool.map(_worker, jobs))
        return n / (time.perf_counter() - t0)


def train_throughput(steps: int = 5, warmup: int = 2, threads: int = 2) -> tuple[float, float]:
    import timm
    import torch

    torch.set_num_threads(threads)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=5)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=4.3e-5)
    x = torch.randn(16, 3, *SIZE)
    y = torch.randint(0, 5, (16,))
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - t0)
        print(f"train step {step}: {time.perf_counter() - t0:.2f} s", file=sys.stderr, flush=True)
    med = statistics.median(times)
    return 16 / med, med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="runs/data/manifest.json")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--n", type=int, default=800, help="images per augmentation preset")
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    from wastenet.data.cache import ImageCache
    from wastenet.data.manifest import load_manifest

    manifest = load_manifest(args.manifest)
    items = manifest.items(split="train")
    ImageCache(items, SIZE, args.cache_dir, workers=2)  # build once if missing
    rows = {}
    for name in ("table3", "table1", "ours"):
        rows[name] = data_throughput(items, args.cache_dir, name, args.n)
        print(f"{name}: {rows[name]:.0f} images/s", file=sys.stderr, flush=True)
    train_ips, step_s = train_throughput(args.steps)
    result = {
        "command": "python benchmarks/bench_data.py " + " ".join(argv or sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "input_size_hw": list(SIZE),
        "data_workers": 2,
        "data_images_per_s": {k: round(v, 1) for k, v in rows.items()},
        "train": {
            "model": "tf_efficientnet_lite0",
            "batch": 16,
            "threads": 2,
            "median_step_s": round(step_s, 3),
            "images_per_s": round(train_ips, 2),
        },
        "ratio_min": round(min(rows.values()) / train_ips, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({**result, "provenance": provenance()}, indent=1))
    print("| pipeline | images/s (2 cores) | x training |")
    print("| --- | ---: | ---: |")
    labels = {
        "table3": "cache + paper aug (table 3, zoom 75 %)",
        "table1": "cache + paper aug (table 1, zoom 100 %)",
        "ours": "cache + full 'ours' aug",
    }
    for k, v in rows.items():
        print(f"| {labels[k]} | {v:.0f} | {v / train_ips:.0f}x |")
    print(
        f"| train tf_efficientnet_lite0 b16 {size_text(SIZE)} fwd+bwd+Adam (median step "
        f"{step_s:.2f} s) | {train_ips:.1f} | 1x |"
    )
    return 0 if result["ratio_min"] >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
