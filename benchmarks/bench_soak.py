"""Soak: the real bin for a long time, watched from outside. Memory flat, frame rate steady,
logs rotated, store within its quota, stream clients served to the end.

``wastenet run`` runs in a process of its own on the bundled sample images looped for
ever (paced like a camera: ``fps``, each item held 1 s with 0.5 s gaps), with the
bundled model (the engine the bin picks itself, unless ``--model``), the sample store
on (every frame offered, a quota so eviction runs all along) and the MJPEG stream on,
read by two real HTTP clients. Every ``--sample-s``
seconds this script samples the bin's RSS (/proc/PID/status), its frame rate (lines
added to timings.jsonl, across rotations), each client's frames and the store's rows.
The timing logs rotate at ``--rotate-mb`` (the bin's default is 10 MB, which a 30-minute
run at 15 frames/s never reaches), so rotation is exercised.

Pass: RSS max - min over the last 10 minutes (the second half of a shorter run) within
``--rss-mb`` (5 MB); frame rate steady (the last third's mean within 10 % of the
first third's, after the first minute, and no interval below half the median); the
timing logs rotated, each file within the limit, at most ``KEEP`` old ones; the store
within its quota, every row's image present, no temporary file; both clients got
frames in every interval. Results: benchmarks/results/soak.json; a table is printed.

    python benchmarks/bench_soak.py --minutes 30
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from wastenet.analysis.report_benchmarks import soak_checks
from wastenet.provenance import cpu_flags, cpu_model, provenance
from wastenet.runtime.app import DEFAULT_SAMPLES
from wastenet.runtime.timings import KEEP

RESULTS = Path(__file__).resolve().parent / "results" / "soak.json"
CHILD = (  # the real CLI, with the timing logs' rotation size lowered
    "import sys\nfrom wastenet.runtime import timings\ntimings.MAX_BYTES = int(sys.argv[1])\n"
    "from wastenet.cli import main\nsys.exit(main(sys.argv[2:]))\n"
)


class StreamClient(threading.Thread):
    """A real MJPEG client: reads the bin's stream as fast as it comes, counts frames."""

    MARKER = b"Content-Type: image/jpeg"

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.frames, self.error = port, 0, None

    def run(self) -> None:
        for _ in range(100):  # the server starts with the bin
            try:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.error = "could not connect"
            return
        self.sock.sendall(b"GET /stream HTTP/1.1\r\nHost: bin\r\n\r\n")
        carry = b""
        try:
            while data := self.sock.recv(1 << 16):
                buf = carry + data
                self.frames += buf.count(self.MARKER)
                carry = buf[-(len(self.MARKER) - 1) :]
        except OSError as exc:
            self.error = str(exc)


class FrameTimes:
    """The capture times (``t``) of the frames the bin logged to timings.jsonl, followed
    across rotations (path -> path.1) by inode. The bin buffers these lines, so a window
    is counted one sample late, once its lines are surely written."""

    def __init__(self, path: Path) -> None:
        self.path, self.inode, self.offset, self.partial = path, None, 0, b""
        self.times: list[float] = []

    def _read_from(self, path: Path, offset: int) -> int:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
        *lines, self.partial = (self.partial + data).split(b"\n")
        self.times += [json.loads(line)["t"] for line in lines if line.strip()]
        return offset + len(data)

    def poll(self) -> None:
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            return
        if self.inode is not None and inode != self.inode:  # rotated since: finish the old one
            older = self.path.with_name(self.path.name + ".1")
            if older.exists() and os.stat(older).st_ino == self.inode:
                self._read_from(older, self.offset)
            self.offset, self.partial = 0, b""
        self.inode = inode
        self.offset = self._read_from(self.path, self.offset)

    def rate(self, start: float, end: float) -> float:
        """Frames per second captured in [start, end) (time.perf_counter, the bin's clock:
        CLOCK_MONOTONIC, the same in every process on Linux)."""
        n = sum(1 for t in self.times if start <= t < end)
        self.times = [t for t in self.times if t >= start]
        return n / (end - start)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def store_rows(store: Path) -> int:
    db = store / "samples.sqlite"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def soak(args, work: Path) -> dict:
    store, run_dir, port = work / "store", work / "run", free_port()
    source = f"{DEFAULT_SAMPLES}?loop=0&fps={args.fps:g}&hold={round(args.fps)}&gap={round(args.fps / 2)}"
    bin_args = [
        "run", "--source", source, "--headless",
        "--mjpeg-port", str(port), "--store", str(store), "--store-policy", "all",
        "--store-quota-mb", f"{args.quota_mb:g}", "--run-dir", str(run_dir),
    ]  # fmt: skip
    if args.model:  # otherwise the bin's own choice, as a user gets it
        bin_args += ["--model", args.model]
    rotate_bytes = int(args.rotate_mb * 1e6)
    # the bin's output goes to a file: a pipe nobody reads fills after ~950 door lines
    # (64 KB), the bin's print blocks in the actuate stage and its watchdog ends it
    output = open(work / "bin_output.txt", "w+", encoding="utf-8")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(rotate_bytes), *bin_args],
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )
    clients = [StreamClient(port) for _ in range(2)]
    for client in clients:
        client.start()
    frame_times = FrameTimes(run_dir / "timings.jsonl")
    samples, t0 = [], time.perf_counter()
    marks, last_frames = [t0], [0, 0]
    try:
        while (now := time.perf_counter()) - t0 < args.minutes * 60:
            time.sleep(min(args.sample_s, t0 + args.minutes * 60 - now))
            if proc.poll() is not None:
                said = (work / "bin_output.txt").read_text(errors="replace")[-2000:]
                raise RuntimeError(
                    f"the bin ended early (exit {proc.returncode}) after "
                    f"{now - t0:.0f} s; it said:\n{said}"
                )
            now = time.perf_counter()
            frame_times.poll()
            frames = [c.frames for c in clients]
            sample = {
                "t_s": round(now - t0, 1),
                "rss_mb": round(rss_mb(proc.pid), 2),
                "fps": None,  # of the interval before: its lines are written by now
                "client_frames": [f - g for f, g in zip(frames, last_frames, strict=True)],
                "store_rows": store_rows(store),
            }
            if len(marks) >= 2:
                samples[-1]["fps"] = round(frame_times.rate(marks[-2], marks[-1]), 2)
            samples.append(sample)
            if len(samples) >= 2:
                print_sample(samples[-2], first=len(samples) == 2)
            marks.append(now)
            last_frames = frames
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        output.close()
    err = (work / "bin_output.txt").read_text(errors="replace").replace(str(work), "TMP")
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "exit_code": proc.returncode,
        "stderr_tail": err.splitlines()[-10:],
        "run": {k: run.get(k) for k in ("status", "exit_code", "summary", "clock", "clock_end")},
        "engine": Path(str(run.get("model"))).name,
        "engine_reason": (run.get("engine_choice") or {}).get("reason", "given with --model"),
        "samples": samples,
        "logs": log_files(run_dir),
        "store": store_state(store),
        "client_errors": [c.error for c in clients],
        "settings": {
            "source": "the bundled samples" + source[len(str(DEFAULT_SAMPLES)) :],
            "fps": args.fps,
            "store_policy": "all",
            "quota_mb": args.quota_mb,
            "rotate_bytes": rotate_bytes,
            "keep": KEEP,
            "sample_s": args.sample_s,
            "minutes": args.minutes,
            "clients": 2,
        },
    }


def log_files(run_dir: Path) -> dict:
    out = {}
    for name in ("timings.jsonl", "actuations.jsonl"):
        files = sorted(run_dir.glob(name + "*"))
        out[name] = {p.name: p.stat().st_size for p in files}
    return out


def store_state(store: Path) -> dict:
    db = sqlite3.connect(f"file:{store / 'samples.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT image_path, bytes FROM samples").fetchall()
    finally:
        db.close()
    files = {p.name for p in (store / "images").iterdir()}
    return {
        "rows": len(rows),
        "bytes": sum(size for _, size in rows),
        "missing_images": sum(1 for name, _ in rows if name not in files),
        "tmp_files": sum(1 for name in files if name.endswith(".tmp")),
        "unnamed_files": len(files - {name for name, _ in rows}),
    }


def checks(result: dict, args) -> dict:
    samples = result["samples"]
    window_s = min(600.0, args.minutes * 60 / 2)
    end = samples[-1]["t_s"]
    last = [s["rss_mb"] for s in samples if s["t_s"] >= end - window_s]
    memory = {"window_s": window_s, "min_mb": min(last), "max_mb": max(last)}
    memory["spread_mb"] = round(memory["max_mb"] - memory["min_mb"], 2)
    memory["whole_run_mb"] = [samples[0]["rss_mb"], max(s["rss_mb"] for s in samples)]
    memory["passed"] = memory["spread_mb"] <= args.rss_mb
    steady = [s["fps"] for s in samples if s["t_s"] > min(60.0, end / 4) and s["fps"] is not None]
    third = max(1, len(steady) // 3)
    first, final = statistics.mean(steady[:third]), statistics.mean(steady[-third:])
    median = statistics.median(steady)
    fps = {"first_third": round(first, 2), "last_third": round(final, 2), "median": median}
    fps["lowest"] = min(steady)
    fps["passed"] = abs(final - first) <= 0.1 * first and fps["lowest"] >= 0.5 * median
    limit, logs = result["settings"]["rotate_bytes"], result["logs"]["timings.jsonl"]
    rotation = {
        "files": logs,
        "rotated": "timings.jsonl.1" in logs,
        "passed": "timings.jsonl.1" in logs
        and len(logs) <= KEEP + 1
        and max(logs.values()) <= limit,
    }
    st = result["store"]
    store = {**st, "quota_bytes": int(args.quota_mb * 1e6)}
    store["passed"] = (
        st["bytes"] <= store["quota_bytes"] and not st["missing_images"] and not st["tmp_files"]
    )
    clients = {
        "frames": [sum(s["client_frames"][i] for s in samples) for i in range(2)],
        "passed": all(min(s["client_frames"]) > 0 for s in samples)
        and not any(result["client_errors"]),
    }
    ended = {"exit_code": result["exit_code"], "passed": result["exit_code"] == 0}
    return {
        "memory": memory,
        "fps": fps,
        "rotation": rotation,
        "store": store,
        "clients": clients,
        "exit": ended,
    }


def print_sample(s: dict, first: bool) -> None:
    if first:
        print("| t s | RSS MB | frames/s | client frames | store rows |")
        print("| ---: | ---: | ---: | ---: | ---: |")
    frames = "/".join(map(str, s["client_frames"]))
    print(
        f"| {s['t_s']:.0f} | {s['rss_mb']:.1f} | {s['fps']:.2f} | {frames} | {s['store_rows']} |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the bin runs")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--fps", type=float, default=15.0, help="the looping source's pace")
    parser.add_argument("--quota-mb", type=float, default=10.0, help="the store's quota")
    parser.add_argument("--rotate-mb", type=float, default=1.0, help="timing log rotation size")
    parser.add_argument("--rss-mb", type=float, default=5.0, help="allowed RSS spread, MB")
    parser.add_argument("--model", help="an engine for the bin (default: its own choice)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.minutes * 60 < 4 * args.sample_s:
        parser.error("--minutes must cover at least 4 samples (--sample-s)")
    flags = cpu_flags()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        result = soak(args, Path(tmp))
    result["checks"] = checks(result, args)
    result["passed"] = all(c["passed"] for c in result["checks"].values())
    result["cpu"] = {"model": cpu_model(), "flags": " ".join(sorted(flags or ()))}
    result["provenance"] = provenance()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print()
    print("| check | measured | passed |\n| --- | --- | --- |")
    for name, text, passed in soak_checks(result):
        print(f"| {name} | {text} | {'yes' if passed else 'NO'} |")
    print(f"\n{'PASSED' if result['passed'] else 'FAILED'}; results in {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
