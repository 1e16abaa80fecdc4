"""Speed of each artifact at batch 1: load, warm-up, p50/p95/p99, IPS, memory, CPU load.

Each artifact runs in its own subprocess (``python -m wastenet.accelerate.bench PATH``)
so peak RSS belongs to that runtime alone and one runtime's threads cannot slow the
next. Results: JSON, a Markdown table like the paper's table 5 and a bar chart of
inferences per second like its figure 9.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from wastenet.errors import ModelFileError
from wastenet.provenance import provenance


def artifact_bytes(path: Path) -> int:
    """Size on disk, with the OpenVINO ``.bin`` and a TensorRT sidecar counted."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = [path.with_suffix(".bin")] if path.suffix == ".xml" else []
    return path.stat().st_size + sum(p.stat().st_size for p in extra if p.exists())


def _gpu_peak_mb() -> float | None:
    if "torch" not in sys.modules:
        return None
    torch = sys.modules["torch"]
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec,
    so a worker started by a big parent would report the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(path: Path, threads: int, warmup: int, iters: int, seed: int = 0) -> dict:
    """Time one artifact in this process (call it through ``bench_one``)."""
    from wastenet.accelerate.engine import load_engine

    start = time.perf_counter()
    engine = load_engine(path, threads=threads)
    load_s = time.perf_counter() - start
    h, w = engine.meta.height, engine.meta.width
    x = np.random.default_rng(seed).standard_normal((1, 3, h, w)).astype(np.float32)
    start = time.perf_counter()
    for _ in range(warmup):
        engine.predict(x)
    warmup_s = time.perf_counter() - start
    times = np.empty(iters)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(iters):
        t0 = time.perf_counter()
        engine.predict(x)
        times[i] = time.perf_counter() - t0
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    ms = times * 1000
    p50 = float(np.percentile(ms, 50))
    return {
        "artifact": str(path),
        "format": engine.name,
        "precision": engine.format.precision,
        "input_hw": [h, w],
        "threads": threads,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "p50_ms": p50,
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "ips_p50": 1000.0 / p50,
        "ips_measured": iters / wall,
        "peak_rss_mb": peak_rss_mb(),
        "gpu_peak_mb": _gpu_peak_mb(),
        "size_mb": artifact_bytes(path) / 1e6,
        "cpu_load": cpu / wall,  # 2.0 = two cores busy for the whole run
        "iters": iters,
    }


def bench_one(path: Path, threads: int, warmup: int, iters: int, timeout: float = 900) -> dict:
    """Run ``measure`` for one artifact in a fresh Python process."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "wastenet.accelerate.bench", str(path),
           "--threads", str(threads), "--warmup", str(warmup), "--iters", str(iters)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        raise ModelFileError(
            f"{path}: benchmark failed ({lines[-1] if lines else proc.returncode})"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def row_labels(rows: list[dict]) -> list[str]:
    """The format name, plus the artifact's folder/file where a format appears twice."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["format"]] = counts.get(r["format"], 0) + 1
    labels = []
    for r in rows:
        label = r["format"]
        if counts[label] > 1 and r.get("artifact"):
            path = Path(r["artifact"])
            label += f" ({path.parent.name}/{path.name})"
        labels.append(label)
    return labels


def markdown(rows: list[dict]) -> str:
    """A table like the paper's table 5, plus the speed-up over PyTorch eager FP32."""
    base = next((r["p50_ms"] for r in rows if r["format"] == "torch"), None)
    lines = [
        "| format | size (MB) | load (s) | p50 (ms) | p95 (ms) | p99 (ms) | IPS (1/p50) | IPS (measured) | speed-up vs eager | peak RSS (MB) | CPU load |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r, label in zip(rows, row_labels(rows), strict=True):
        speed = f"{base / r['p50_ms']:.1f}x" if base else "-"
        lines.append(
            f"| {label} | {r['size_mb']:.1f} | {r['load_s']:.2f} | {r['p50_ms']:.2f} | "
            f"{r['p95_ms']:.2f} | {r['p99_ms']:.2f} | {r['ips_p50']:.0f} | "
            f"{r['ips_measured']:.0f} | {speed} | {r['peak_rss_mb']:.0f} | {r['cpu_load']:.2f} |"
        )
    return "\n".join(lines)


def bar_chart(
    rows: list[dict], path: Path, title: str = "Inferences per second (batch 1)"
) -> Path | None:
    """Figure 9's bars: IPS at p50 per format (None, nothing drawn, without matplotlib)."""
    from wastenet.plotting import pyplot

    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(1.2 * len(rows) + 2, 4))
    names = row_labels(rows)
    values = [r["ips_p50"] for r in rows]
    bars = ax.bar(names, values, color="tab:green")
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("inferences / s (1 / p50)")
    ax.set_title(title)
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_results(rows: list[dict], out_dir: Path, stem: str = "bench") -> dict[str, Path | None]:
    """JSON, Markdown and the bar chart; ``png`` is None where matplotlib is missing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps({"rows": rows, "provenance": provenance()}, indent=2))
    md_path.write_text(markdown(rows) + "\n")
    return {"json": json_path, "md": md_path, "png": bar_chart(rows, out_dir / f"{stem}.png")}


def _main() -> None:
    parser = argparse.ArgumentParser(description="benchmark one artifact (worker process)")
    parser.add_argument("artifact")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=300)
    args = parser.parse_args()
    print(json.dumps(measure(Path(args.artifact), args.threads, args.warmup, args.iters)))


if __name__ == "__main__":
    _main()
