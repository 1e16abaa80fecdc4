"""The sample store: rows + JPEGs, sampling policies, quota eviction, and kill -9 safety."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from wastenet.errors import ConfigError
from wastenet.runtime.store import SamplePolicy, SampleStore

PROBS = np.array([0.1, 0.6, 0.1, 0.1, 0.1], np.float32)


def frame(v=0):
    rng = np.random.default_rng(v)
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_rows_and_images(tmp_path):
    store = SampleStore(tmp_path / "s", model_version="lite0@abc")
    row = store.offer(frame(), "glass", PROBS, "glass", frame_index=7, ts=1000.0)
    rows = store.rows()
    assert row == rows[0]["id"] and len(rows) == 1
    r = rows[0]
    assert (r["prediction"], r["vote"], r["model_version"], r["frame_index"]) == (
        "glass",
        "glass",
        "lite0@abc",
        7,
    )
    assert r["confidence"] == pytest.approx(0.6)
    assert r["probs"].startswith("[0.1, 0.6")
    image = cv2.imread(str(tmp_path / "s" / "images" / r["image_path"]))
    assert image.shape == (48, 64, 3)
    mode = store.db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.close()


def test_policies(tmp_path):
    uncertain = SampleStore(tmp_path / "u", SamplePolicy.parse("uncertain", 0.7))
    sure = np.array([0.9, 0.025, 0.025, 0.025, 0.025], np.float32)
    assert uncertain.offer(frame(), "cardboard", sure, None) is None
    assert uncertain.offer(frame(), "glass", PROBS, None) is not None
    every = SampleStore(tmp_path / "e", SamplePolicy.parse("every:3"))
    kept = [every.offer(frame(i), "glass", PROBS, None, i) is not None for i in range(7)]
    assert kept == [True, False, False, True, False, False, True]
    with pytest.raises(ConfigError, match="every:K"):
        SamplePolicy.parse("every:0")
    with pytest.raises(ConfigError):
        SamplePolicy.parse("sometimes")


def test_quota_evicts_oldest_rows_and_files(tmp_path):
    store = SampleStore(tmp_path / "q")
    for i in range(3):
        store.offer(frame(i), "glass", PROBS, None, i)
    per = store.total_bytes / 3
    store.quota_bytes = int(per * 4.5)
    for i in range(3, 10):
        store.offer(frame(i), "glass", PROBS, None, i)
    rows = store.rows()
    assert [r["frame_index"] for r in rows] == [6, 7, 8, 9]  # the oldest went first
    assert store.total_bytes <= store.quota_bytes
    files = sorted(p.name for p in (tmp_path / "q" / "images").iterdir())
    assert files == sorted(r["image_path"] for r in rows)
    assert store.evicted == 6


def test_orphan_images_are_removed_on_open(tmp_path):
    store = SampleStore(tmp_path / "o")
    store.offer(frame(), "glass", PROBS, None)
    store.close()
    (tmp_path / "o" / "images" / "stray.jpg").write_bytes(b"x")
    (tmp_path / "o" / "images" / "half.jpg.tmp").write_bytes(b"x")
    store = SampleStore(tmp_path / "o")
    assert len(list((tmp_path / "o" / "images").iterdir())) == 1 == len(store.rows())


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from wastenet.runtime.store import SampleStore
    store = SampleStore(sys.argv[1], quota_bytes=int(sys.argv[2]))
    rng = np.random.default_rng(0)
    probs = np.array([0.2, 0.2, 0.2, 0.2, 0.2], np.float32)
    i = 0
    while True:
        store.offer(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), "paper", probs, None, i)
        i += 1
        if i == 5:
            print("ready", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_mid_run_loses_no_committed_sample(tmp_path):
    root = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(600_000)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # long enough for eviction to be running too (quota ~ 20 images)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    db = sqlite3.connect(root / "samples.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = db.execute("SELECT image_path, bytes FROM samples").fetchall()
    db.close()
    assert len(rows) >= 5
    for name, size in rows:
        path = root / "images" / name
        assert path.is_file() and path.stat().st_size == size
        assert cv2.imread(str(path)) is not None
    store = SampleStore(root)  # reopening cleans up what the crash left half-done
    assert len(store.rows()) == len(rows)
    assert {p.name for p in (root / "images").iterdir()} == {name for name, _ in rows}
    store.offer(frame(), "glass", PROBS, None)  # and the store goes on
    assert len(store.rows()) == len(rows) + 1
