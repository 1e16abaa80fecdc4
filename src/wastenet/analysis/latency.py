"""The paper's latency model (equations 1 and 2, section 4.4.1 and 5.6) and a run's measurements.

With a majority vote over N predictions, a new item wins once it holds N/2 + 1
slots, so the queue adds (N/2 + 1)/IPS seconds; the servo adds its own delay,
which the paper measured as 0.646 s (1 s total on video at N = 10, 17 IPS).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from wastenet.errors import WasteNetError
from wastenet.runtime.actuators import PAPER_SERVO_DELAY_S

PAPER_N = 10
PAPER_IPS = 17.0
PAPER_TOTAL_S = 1.0  # classification-to-servo delay seen in the demo footage


def _check(n: float, ips: float) -> None:
    if n < 1 or ips <= 0:
        raise WasteNetError(f"latency needs N >= 1 and IPS > 0 (got N={n}, IPS={ips})")


def queue_delay(n: float, ips: float) -> float:
    """T_queue = (N/2 + 1) / IPS: frames until a new class holds the majority of the window."""
    _check(n, ips)
    return (n / 2 + 1) / ips


def servo_latency(t_cts: float, n: float = PAPER_N, ips: float = PAPER_IPS) -> float:
    """T_servo = T_cts - (N/2 + 1)/IPS: the measured total minus the experiment's queue."""
    return t_cts - queue_delay(n, ips)


def equation1(n_star: float, ips: float, t_cts: float = PAPER_TOTAL_S, n: float = PAPER_N) -> float:
    """Eq. 1: T_total = (N*/2 + 1)/IPS + (T_cts - (N/2 + 1)/IPS) for a desired queue N*."""
    return queue_delay(n_star, ips) + servo_latency(t_cts, n, ips)


def equation2(n: float, ips: float = PAPER_IPS, servo_s: float = PAPER_SERVO_DELAY_S) -> float:
    """Eq. 2: T_total = (1/IPS)(N/2 + 1) + T_servo (0.646 s in the paper)."""
    return queue_delay(n, ips) + servo_s


def calculator_table(ns: list[int], ips: float, servo_s: float = PAPER_SERVO_DELAY_S) -> list[dict]:
    return [
        {
            "n": n,
            "ips": ips,
            "queue_s": queue_delay(n, ips),
            "servo_s": servo_s,
            "total_s": equation2(n, ips, servo_s),
        }
        for n in ns
    ]


def _read_jsonl(path: Path, valid) -> tuple[list[dict], int]:
    """The records of a JSONL log that ``valid`` accepts, and how many lines it skipped."""
    records, bad = [], 0
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict) and valid(record):
                    records.append(record)
                else:
                    bad += 1
    except OSError as exc:
        raise WasteNetError(f"{path}: cannot read ({exc.strerror})") from exc
    return records, bad


def _numbers(record: dict, *keys: str) -> bool:
    return all(
        isinstance(record.get(k), int | float)
        and not isinstance(record.get(k), bool)
        and math.isfinite(record[k])
        for k in keys
    )


def load_run(run_dir: str | Path) -> dict:
    """A run's actuations and frame rate, from the files the bin wrote there.

    Malformed lines (not JSON, or without the numbers used here) are counted and skipped:
    ``skipped_lines`` says how many per file.
    """
    run_dir = Path(run_dir)
    acts_path, frames_path = run_dir / "actuations.jsonl", run_dir / "timings.jsonl"
    if not acts_path.is_file() or not frames_path.is_file():
        raise WasteNetError(f"{run_dir}: not a bin run folder (no actuations.jsonl/timings.jsonl)")
    acts, bad_acts = _read_jsonl(
        acts_path, lambda r: _numbers(r, "onset_t", "command_t", "servo_delay_s")
    )
    frames, bad_frames = _read_jsonl(frames_path, lambda r: _numbers(r, "t"))
    if not frames:
        raise WasteNetError(
            f"{frames_path}: no readable frame records ({bad_frames} malformed lines)"
        )
    times, gaps, inferred, previous = [], [], 0, None
    for record in frames:
        times.append(record["t"])
        present = bool(record.get("present", True))
        inferred += int(present)
        if present and previous is not None and previous.get("present", True):
            gaps.append(record["t"] - previous["t"])
        previous = record
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    fps = (len(times) - 1) / span if span > 0 else 0.0
    # The vote fills at the inference rate: the time between consecutive inferred frames.
    ips = 1.0 / float(np.median(gaps)) if gaps and np.median(gaps) > 0 else fps
    return {
        "actuations": acts,
        "frames": len(times),
        "inferred": inferred,
        "fps": fps,
        "ips": ips,
        "config": _run_config(run_dir / "run.json"),
        "skipped_lines": {"timings.jsonl": bad_frames, "actuations.jsonl": bad_acts},
    }


def _run_config(path: Path) -> dict:
    """The run's config from run.json ({} when absent); a damaged one is a clear error."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8")).get("config", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise WasteNetError(f"{path}: not a readable run.json ({exc})") from exc
    if not isinstance(config, dict):
        raise WasteNetError(f"{path}: 'config' is not an object")
    return config


def skipped_note(run: dict) -> str:
    """One line naming the malformed lines load_run skipped, or '' when there were none."""
    parts = [f"{n} in {name}" for name, n in run.get("skipped_lines", {}).items() if n]
    return f"skipped malformed lines: {', '.join(parts)}" if parts else ""


def compare_run(run: dict, n: int | None = None, ips: float | None = None) -> dict:
    """Measured queue and total latencies of a run next to equations 1-2 at its own N and rate."""
    acts = [a for a in run["actuations"] if a.get("ok", True)]
    if not acts:
        raise WasteNetError("the run has no door actuations to measure")
    try:
        n = n or int(run["config"].get("vote", PAPER_N))
    except (TypeError, ValueError) as exc:
        raise WasteNetError(f"the run's run.json has no usable vote window N ({exc})") from exc
    ips = ips or run["ips"]
    queue = np.array([a["command_t"] - a["onset_t"] for a in acts])
    servo = np.array([a["servo_delay_s"] for a in acts])
    return {
        "n": n,
        "ips": ips,
        "actuations": len(acts),
        "measured_queue_s": float(np.median(queue)),
        "measured_total_s": float(np.median(queue + servo)),
        "eq1_queue_s": queue_delay(n, ips),
        "eq2_total_s": equation2(n, ips, float(np.median(servo))),
        "frame_time_s": 1.0 / ips,
    }
