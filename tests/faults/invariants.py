"""The invariants every fault test checks afterwards, on real records: the servo moves that
reached the hardware, the reopened SQLite store and its files, the user's files."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from faults.parts import CLOSED_ANGLE, OPEN_ANGLE
from wastenet.runtime.store import SampleStore

SLACK_S = 1.0  # no door open longer than hold_s + this


# ------------------------------------------------------------------ doors


def read_moves(path: Path) -> list[dict]:
    """JSONL lines with t, channel, angle: the simulated hardware's log or a sim:// record."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def door_intervals(moves: list[dict]) -> tuple[list[tuple[int, float, float]], dict[int, float]]:
    """(channel, opened t, closed t) for every opening, and the channels still open at the end."""
    opened: dict[int, float] = {}
    intervals = []
    for move in sorted(moves, key=lambda m: m["t"]):
        ch = move["channel"]
        if move["angle"] == OPEN_ANGLE:
            opened.setdefault(ch, move["t"])
        elif move["angle"] == CLOSED_ANGLE and ch in opened:
            intervals.append((ch, opened.pop(ch), move["t"]))
    return intervals, opened


def check_doors(moves: list[dict], hold_s: float, closed_at_end: bool = True) -> list:
    """No door open longer than hold_s + 1 s; every door closed at the end. Returns intervals."""
    intervals, still_open = door_intervals(moves)
    for channel, t_open, t_closed in intervals:
        assert t_closed - t_open <= hold_s + SLACK_S, (
            f"door on channel {channel} open {t_closed - t_open:.2f} s > hold {hold_s} s + 1 s"
        )
    if closed_at_end:
        assert not still_open, f"doors on channels {sorted(still_open)} left open"
    return intervals


# ------------------------------------------------------------------ the store


def plant_user_files(root: Path) -> dict[Path, bytes]:
    """Files a user put in the store's folders before the bin ran: none may be deleted."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    ok, jpeg = cv2.imencode(".jpg", np.full((24, 32, 3), (10, 120, 200), np.uint8))
    planted = {
        root / "images" / "holiday.jpg": jpeg.tobytes(),
        root / "images" / "notes.txt": b"keep me\n",
        root / "images" / "0000000000001-00000001-1-deadbeef.jpg": jpeg.tobytes(),  # store-like
        root / "README.txt": b"samples for retraining\n",
    }
    for path, data in planted.items():
        path.write_bytes(data)
    return planted


def committed(root: Path) -> list[tuple[int, str, int]]:
    """The rows committed now, read by a read-only connection beside the writer."""
    db_path = root / "samples.sqlite"
    if not db_path.exists():
        return []
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT id, image_path, bytes FROM samples ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def check_store(root: Path, before: list[tuple], planted: dict[Path, bytes]) -> list[dict]:
    """Reopen the real store: every committed row of ``before`` is there with its whole image,
    every row's image exists, no temporary file or journal row is left, and every planted
    user file is untouched. Returns the rows."""
    store = SampleStore(root)
    try:
        rows = {r["id"]: r for r in store.rows()}
        journal = store.db.execute("SELECT name, op FROM journal").fetchall()
    finally:
        store.close()
    for row_id, name, size in before:
        assert row_id in rows and rows[row_id]["image_path"] == name, f"sample {name} lost"
        assert rows[row_id]["bytes"] == size
    for row in rows.values():
        path = root / "images" / row["image_path"]
        assert path.is_file() and path.stat().st_size == row["bytes"], f"{path} not whole"
        assert cv2.imread(str(path)) is not None
    assert not [p.name for p in (root / "images").iterdir() if p.name.endswith(".tmp")]
    assert journal == []
    for path, data in planted.items():
        assert path.is_file() and path.read_bytes() == data, f"user file {path.name} touched"
    return list(rows.values())


# ------------------------------------------------------------------ time and threads


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def live_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def run_record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())
