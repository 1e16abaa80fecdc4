"""Per-stage timings of every frame, summarised in constant memory and written for analysis.

A run folder holds ``timings.jsonl`` (one line per frame: capture time and seconds
per stage) and ``actuations.jsonl`` (one line per door command: onset, decision,
command and modelled arrival times), which ``wastenet latency --run`` reads. Both
are rotated at a size limit (``TimingsWriter``), so a bin running for weeks keeps
at most a few tens of MB of them. A full disk drops lines (one warning per burst of
failures), never the run.

Every time in these files is ``time.perf_counter()`` (``MONOTONIC``): steady, but with
an arbitrary zero. ``run.json``'s ``clock`` (``clock_anchor()``) pairs one reading of
it with the wall clock, so another tool (``wastenet power parse --run``) lines the
run up with its own wall-clock samples: wall = t + ``offset_s``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

MONOTONIC = "time.perf_counter"  # the clock of every ``t`` a run folder holds
MAX_BYTES, KEEP = 10_000_000, 3  # each log file rotates at 10 MB, 3 older ones kept

STAGES = ("capture", "gate", "preprocess", "inference", "vote", "actuate", "display", "store")


def stage_order(names) -> list[str]:
    """Stage names in the loop's order; any others (a benchmark's own) after, sorted."""
    names = set(names)
    return [s for s in STAGES if s in names] + sorted(names - set(STAGES))


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
        order = stage_order(self.total)
        return {
            name: {
                "frames": self.count[name],
                "median_ms": float(np.median(self.recent[name])) * 1000,
                "mean_ms": self.total[name] / self.count[name] * 1000,
                "share": self.total[name] / grand,
            }
            for name in order
        }


def clock_anchor() -> dict:
    """The wall clock (UTC) at one moment of the run's monotonic clock, for run.json.

    ``monotonic_s`` is ``time.perf_counter()`` (the clock of every ``t`` in the run
    folder) read around ``time.time()``; ``offset_s`` is wall minus monotonic, so a
    timestamp ``t`` of the run happened at wall-clock ``t + offset_s`` (epoch seconds).
    """
    before = time.perf_counter()
    wall = time.time()
    after = time.perf_counter()
    mono = (before + after) / 2
    utc = datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="microseconds")
    return {
        "monotonic": MONOTONIC,
        "monotonic_s": round(mono, 6),
        "epoch_s": round(wall, 6),
        "utc": utc.replace("+00:00", "Z"),
        "offset_s": round(wall - mono, 6),
        "uncertainty_s": round(after - before, 9),
    }


def read_clock(run_dir: str | Path) -> dict | None:
    """run.json's clock anchor (``clock_anchor()``), or None when the run has none."""
    try:
        data = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    clock = data.get("clock") if isinstance(data, dict) else None
    if not isinstance(clock, dict) or clock.get("monotonic") != MONOTONIC:
        return None
    try:
        float(clock["offset_s"]), float(clock["epoch_s"]), float(clock["monotonic_s"])
    except (KeyError, TypeError, ValueError):
        return None
    return clock


class RotatingFile:
    """Appends lines to ``path``; before a line would take it past ``max_bytes`` the file
    moves to ``path.1`` (``.1`` to ``.2`` ..., the oldest past ``.keep`` dropped) and a
    fresh one starts. Rotation only happens between lines and never drops the line being
    written: a line longer than ``max_bytes`` gets a file of its own.

    A write the disk refuses (full, read-only, gone) drops the line and what was
    buffered with it: one warning per burst of failures, and the file is opened again
    for the next line."""

    def __init__(self, path: str | Path, max_bytes: int, keep: int, flush: bool = False) -> None:
        if max_bytes <= 0 or keep < 0:
            raise ValueError(f"max_bytes {max_bytes} must be > 0 and keep {keep} >= 0")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep
        self.flush = flush
        self.rotations = 0
        self.dropped = 0  # lines lost to write failures
        self._burst = 0
        self._handle = None
        self._open()

    def _open(self) -> None:
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._size = self.path.stat().st_size

    def write(self, line: str) -> None:
        try:
            if self._handle is None:
                self._open()
            size = len(line.encode("utf-8"))
            if self._size > 0 and self._size + size > self.max_bytes:
                self.rotate()
            self._handle.write(line)
            self._size += size
            if self.flush:
                self._handle.flush()
        except OSError as exc:
            self._failed(exc)
            return
        if self._burst:
            log.warning("%s: writing again after dropping %d lines", self.path, self._burst)
            self._burst = 0

    def _failed(self, exc: OSError) -> None:
        """Drop the line (and the unwritten buffer); the next write opens the file again."""
        self.dropped += 1
        self._burst += 1
        if self._burst == 1:
            log.warning(
                "%s: cannot write (%s); dropping lines until a write succeeds, the bin goes on",
                self.path,
                exc.strerror or exc,
            )
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()  # flushing what is buffered fails again; the fd closes anyway

    def rotate(self) -> None:
        if self._handle is not None:
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
        handle, self._handle = self._handle, None
        if handle is not None and not handle.closed:
            try:
                handle.close()
            except OSError as exc:
                self._failed(exc)


class TimingsWriter:
    """Appends frame timings and actuations to JSONL files in a run folder.

    Size limit: ``timings.jsonl`` and ``actuations.jsonl`` are each rotated when the
    next line would take them past ``max_bytes`` (``MAX_BYTES``, 10 MB), keeping ``keep``
    (``KEEP``, 3) older files, ``timings.jsonl.1`` (newest) to ``timings.jsonl.3``
    (oldest); older data is deleted. So each file takes at most ``(keep + 1) *
    max_bytes`` (40 MB) of disk however long the bin runs. ``wastenet latency --run``
    reads the current files only.
    """

    def __init__(
        self, run_dir: str | Path, max_bytes: int | None = None, keep: int | None = None
    ) -> None:
        max_bytes = MAX_BYTES if max_bytes is None else max_bytes
        keep = KEEP if keep is None else keep
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

    def write_json(self, name: str, data: dict) -> bool:
        """Write ``name`` whole or not at all (a temporary file renamed over it); a disk that
        refuses it is logged and reported as False, never raised."""
        path = self.run_dir / name
        tmp = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("%s: not written (%s)", path, exc.strerror or exc)
            return False
        return True

    def flush(self) -> None:
        """Push buffered frame lines to the file (the watchdog does, before a hard exit)."""
        handle = self._frames._handle
        if handle is not None:
            try:
                handle.flush()
            except OSError as exc:
                self._frames._failed(exc)

    def close(self) -> None:
        for handle in (self._frames, self._acts):
            handle.close()
