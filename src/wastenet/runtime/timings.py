"""Per-stage timings of every frame, summarised in constant memory and written for analysis.

A run folder holds ``timings.jsonl`` (one line per frame: capture time and seconds
per stage) and ``actuations.jsonl`` (one line per door command: onset, decision,
command and modelled arrival times), which ``wastenet latency --run`` reads. Both
are rotated at a size limit (``TimingsWriter``), so a bin running for weeks keeps
at most a few tens of MB of them.
"""

from __future__ import annotations

import json
import os
from collections import deque
from pathlib import Path

import numpy as np

STAGES = ("capture", "gate", "preprocess", "inference", "vote", "actuate", "display", "store")


class StageStats:
    """Totals for every stage plus the last ``keep`` samples for medians: memory stays flat."""

    def __init__(self, keep: int = 5000) -> None:
        self.total: dict[str, float] = {}
        self.count: dict[str, int] = {}
        self.recent: dict[str, deque] = {}
        self.keep = keep

    def add(self, times: dict[str, float]) -> None:
        for name, seconds in times.items():
            self.total[name] = self.total.get(name, 0.0) + seconds
            self.count[name] = self.count.get(name, 0) + 1
            self.recent.setdefault(name, deque(maxlen=self.keep)).append(seconds)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: frames it ran on, median and mean ms, and its share of all stage time."""
        grand = sum(self.total.values()) or 1.0
        order = [s for s in STAGES if s in self.total] + sorted(set(self.total) - set(STAGES))
        return {
            name: {
                "frames": self.count[name],
                "median_ms": float(np.median(self.recent[name])) * 1000,
                "mean_ms": self.total[name] / self.count[name] * 1000,
                "share": self.total[name] / grand,
            }
            for name in order
        }


class RotatingFile:
    """Appends lines to ``path``; before a line would take it past ``max_bytes`` the file
    moves to ``path.1`` (``.1`` to ``.2`` ..., the oldest past ``.keep`` dropped) and a
    fresh one starts. Rotation only happens between lines and never drops the line being
    written: a line longer than ``max_bytes`` gets a file of its own."""

    def __init__(self, path: str | Path, max_bytes: int, keep: int, flush: bool = False) -> None:
        if max_bytes <= 0 or keep < 0:
            raise ValueError(f"max_bytes {max_bytes} must be > 0 and keep {keep} >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.flush = flush
        self.rotations = 0
        self._open()

    def _open(self) -> None:
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = self.path.stat().st_size

    def write(self, line: str) -> None:
        size = len(line.encode("utf-8"))
        if self._size > 0 and self._size + size > self.max_bytes:
            self.rotate()
        self._handle.write(line)
        self._size += size
        if self.flush:
            self._handle.flush()

    def rotate(self) -> None:
        self._handle.close()
        try:
            if self.keep == 0:
                self.path.unlink()
            for i in range(self.keep - 1, 0, -1):
                older = self.path.with_name(f"{self.path.name}.{i}")
                if older.exists():
                    os.replace(older, self.path.with_name(f"{self.path.name}.{i + 1}"))
            if self.keep > 0:
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
            self.rotations += 1
        finally:
            self._open()  # carry on in a file, rotated or not

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()


class TimingsWriter:
    """Appends frame timings and actuations to JSONL files in a run folder.

    Size limit: ``timings.jsonl`` and ``actuations.jsonl`` are each rotated when the
    next line would take them past ``max_bytes`` (default 10 MB), keeping ``keep``
    (default 3) older files, ``timings.jsonl.1`` (newest) to ``timings.jsonl.3``
    (oldest); older data is deleted. So each file takes at most ``(keep + 1) *
    max_bytes`` (40 MB) of disk however long the bin runs. ``wastenet latency --run``
    reads the current files only.
    """

    def __init__(self, run_dir: str | Path, max_bytes: int = 10_000_000, keep: int = 3) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._frames = RotatingFile(self.run_dir / "timings.jsonl", max_bytes, keep)
        self._acts = RotatingFile(self.run_dir / "actuations.jsonl", max_bytes, keep, flush=True)

    def frame(
        self, index: int, t_capture: float, present: bool, label: str | None, times: dict
    ) -> None:
        record = {"i": index, "t": round(t_capture, 6), "present": present, "label": label}
        record.update({k: round(v * 1000, 4) for k, v in times.items()})
        self._frames.write(json.dumps(record) + "\n")

    def actuation(self, record: dict) -> None:
        self._acts.write(json.dumps(record) + "\n")

    def write_json(self, name: str, data: dict) -> None:
        (self.run_dir / name).write_text(json.dumps(data, indent=2) + "\n")

    def close(self) -> None:
        for handle in (self._frames, self._acts):
            handle.close()
