"""Per-stage timings of every frame, summarised in constant memory and written for analysis.

A run folder holds ``timings.jsonl`` (one line per frame: capture time and seconds
per stage) and ``actuations.jsonl`` (one line per door command: onset, decision,
command and modelled arrival times), which ``wastenet latency --run`` reads.
"""

from __future__ import annotations

import json
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


class TimingsWriter:
    """Appends frame timings and actuations to JSONL files in a run folder."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._frames = open(self.run_dir / "timings.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self._acts = open(self.run_dir / "actuations.jsonl", "a", encoding="utf-8")  # noqa: SIM115

    def frame(
        self, index: int, t_capture: float, present: bool, label: str | None, times: dict
    ) -> None:
        record = {"i": index, "t": round(t_capture, 6), "present": present, "label": label}
        record.update({k: round(v * 1000, 4) for k, v in times.items()})
        self._frames.write(json.dumps(record) + "\n")

    def actuation(self, record: dict) -> None:
        self._acts.write(json.dumps(record) + "\n")
        self._acts.flush()

    def write_json(self, name: str, data: dict) -> None:
        (self.run_dir / name).write_text(json.dumps(data, indent=2) + "\n")

    def close(self) -> None:
        for handle in (self._frames, self._acts):
            if not handle.closed:
                handle.close()
