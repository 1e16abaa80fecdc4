"""End-to-end bin loop: frames/s on an image-folder source, share of time per stage, memory growth.

Runs the real loop (folder source -> gate -> preprocess -> engine -> vote -> sim:// doors
-> timings file) for each engine given, with every frame inferred (``--no-gate``
numbers) and with the presence gate on the replayed scene. Memory is the process RSS
sampled every 1,000 frames over a long run (100,000 frames by default) on a cheap
engine (a nearest-colour ONNX model at the same input size, so preprocessing, the
loop and the files are real and only the CNN is left out) unless ``--memory-engine``
names a real one. Results go to benchmarks/results/loop.json; a Markdown table is printed.

    taskset -c 0,1 python benchmarks/bench_loop.py --engine m.int8.onnx --engine m.onnx
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from wastenet.accelerate import load_engine
from wastenet.classes import DEFAULT_INPUT_SIZE, size_text
from wastenet.data.cache import parse_size
from wastenet.provenance import provenance
from wastenet.runtime.actuators import open_actuator
from wastenet.runtime.app import DEFAULT_MODEL, DEFAULT_SAMPLES
from wastenet.runtime.doors import load_door_map
from wastenet.runtime.gate import PresenceGate
from wastenet.runtime.loop import BinLoop
from wastenet.runtime.sources import ImageFolderSource
from wastenet.runtime.timings import TimingsWriter
from wastenet.runtime.vote import MajorityVote

RESULTS = Path(__file__).resolve().parent / "results" / "loop.json"
FRAME_HW = DEFAULT_INPUT_SIZE  # frames at the model's input size, as the paper's camera


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def make_loop(engine, gate: bool, run_dir: Path, size_hw=FRAME_HW) -> BinLoop:
    doors = load_door_map()
    source = ImageFolderSource(DEFAULT_SAMPLES, hold=15, gap=8, loop=0, size_hw=size_hw)
    writer = TimingsWriter(run_dir)
    hooks = [
        (
            "record",
            lambda r: writer.frame(r.frame.index, r.frame.t_capture, r.present, r.label, r.times),
        )
    ]
    loop = BinLoop(
        source,
        engine,
        MajorityVote(10, 0.7),
        open_actuator("sim://", doors),
        doors,
        PresenceGate() if gate else None,
        hooks,
    )
    loop.writer = writer  # closed by the caller
    return loop


def throughput(engine, frames: int, gate: bool, repeats: int = 3, warmup: int = 30) -> dict:
    """The median of ``repeats`` runs of ``frames`` frames each, after a warm-up."""
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        loop = make_loop(engine, gate, Path(tmp))
        loop.run(max_frames=warmup)
        for _ in range(repeats):
            loop.summary = type(loop.summary)()
            runs.append(loop.run(max_frames=frames))
        loop.writer.close()
    runs.sort(key=lambda s: s.fps)
    summary = runs[len(runs) // 2]
    return {
        "gate": gate,
        "frames": summary.frames,
        "inferred": summary.inferred,
        "elapsed_s": summary.elapsed_s,
        "fps": summary.fps,
        "fps_runs": [s.fps for s in runs],
        "decisions": summary.decisions,
        "stages": summary.stages.summary(),
    }


def memory_growth(engine, frames: int, size_hw, every: int = 1000) -> dict:
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        loop = make_loop(engine, gate=False, run_dir=Path(tmp), size_hw=size_hw)
        t0 = time.perf_counter()
        while loop.summary.frames < frames:
            loop.run(max_frames=loop.summary.frames + every)
            samples.append(round(rss_mb(), 2))
        elapsed = time.perf_counter() - t0
        loop.writer.close()
    base = samples[max(0, len(samples) // 20 - 1)]  # after warm-up (5 % of the run)
    return {
        "frames": frames,
        "elapsed_s": elapsed,
        "fps": frames / elapsed,
        "rss_mb_first": samples[0],
        "rss_mb_base": base,
        "rss_mb_last": samples[-1],
        "rss_mb_max": max(samples),
        "growth_pct": (samples[-1] - base) / base * 100,
        "rss_mb_samples": samples,
    }


def colour_engine(tmp: Path, input_hw=FRAME_HW):
    from wastenet.imageio import read_rgb
    from wastenet.runtime.testing import write_colour_model

    examples: dict[str, list] = {}
    for path in sorted(DEFAULT_SAMPLES.glob("*.jpg")):
        examples.setdefault(path.stem.rsplit("_", 1)[0], []).append(read_rgb(path))
    path = tmp / "colour.onnx"
    write_colour_model(path, examples, input_hw=input_hw)
    return load_engine(path, threads=2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine", action="append", help="model artifact(s); default: the bundled model"
    )
    parser.add_argument(
        "--frames", type=int, default=600, help="frames per throughput run (3 runs, median)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-frames", type=int, default=100_000)
    parser.add_argument(
        "--memory-engine", help="engine for the memory run (default: cheap colour model)"
    )
    parser.add_argument(
        "--memory-size", default=size_text(FRAME_HW), help="frame HxW (or PCT%%) of the memory run"
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    engines = args.engine or ([str(DEFAULT_MODEL)] if DEFAULT_MODEL.exists() else [])
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    result = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores_visible": len(os.sched_getaffinity(0)),
            "python": sys.version.split()[0],
        },
        "threads": args.threads,
        "source": f"{DEFAULT_SAMPLES.name}/ (10 TrashNet images, {size_text(FRAME_HW)} (HxW) "
        "frames, hold=15, gap=8)",
        "runs": [],
    }
    for path in engines + ["colour"]:
        engine = colour_engine(tmp) if path == "colour" else load_engine(path, threads=args.threads)
        name = "colour-centroid ONNX (cheap stand-in)" if path == "colour" else Path(path).name
        for gate in (False, True):
            run = throughput(engine, args.frames, gate)
            run["engine"] = name
            run["engine_path"] = None if path == "colour" else str(path)
            result["runs"].append(run)
            print(f"{name} gate={gate}: {run['fps']:.1f} frames/s", file=sys.stderr)
    memory_hw = parse_size(args.memory_size)
    if args.memory_engine:
        mem_engine = load_engine(args.memory_engine, threads=args.threads)
    else:
        mem_engine = colour_engine(tmp, input_hw=memory_hw)
    result["memory"] = memory_growth(mem_engine, args.memory_frames, memory_hw)
    result["memory"]["frame_hw"] = list(memory_hw)
    result["memory"]["engine"] = args.memory_engine or "colour-centroid ONNX (cheap stand-in)"
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**result, "provenance": provenance()}, indent=2) + "\n")
    print_table(result)
    return 0


def print_table(result: dict) -> None:
    stage_names = []
    for run in result["runs"]:
        stage_names += [s for s in run["stages"] if s not in stage_names]
    print(
        "| engine | gate | frames/s | inferred | "
        + " | ".join(f"{s} %" for s in stage_names)
        + " |"
    )
    print("| --- | --- | ---: | ---: |" + " ---: |" * len(stage_names))
    for run in result["runs"]:
        shares = [
            f"{run['stages'][s]['share'] * 100:.1f}" if s in run["stages"] else "-"
            for s in stage_names
        ]
        print(
            f"| {run['engine']} | {'on' if run['gate'] else 'off'} | {run['fps']:.1f} | "
            f"{run['inferred']}/{run['frames']} | " + " | ".join(shares) + " |"
        )
    m = result["memory"]
    print(
        f"\nmemory over {m['frames']:,} frames ({m['engine']}, {m['fps']:.0f} frames/s): RSS "
        f"{m['rss_mb_base']:.1f} MB after warm-up -> {m['rss_mb_last']:.1f} MB "
        f"({m['growth_pct']:+.2f} %), max {m['rss_mb_max']:.1f} MB"
    )


if __name__ == "__main__":
    sys.exit(main())
