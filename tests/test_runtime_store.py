"""The sample store: rows + JPEGs, sampling policies, quota eviction, and kill -9 safety."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest

from wastenet.classes import CLASSES
from wastenet.errors import ConfigError, WasteNetError
from wastenet.runtime.store import SamplePolicy, SampleStore
from wastenet.sureness import NotSureRule

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
    uncertain = SampleStore(tmp_path / "u", SamplePolicy.parse("uncertain", NotSureRule(0.7)))
    sure = np.array([0.9, 0.025, 0.025, 0.025, 0.025], np.float32)
    assert uncertain.offer(frame(), "cardboard", sure, None) is None
    assert uncertain.offer(frame(), "glass", PROBS, None) is not None
    every = SampleStore(tmp_path / "e", SamplePolicy.parse("every:3"))
    kept = [every.offer(frame(i), "glass", PROBS, None, i) is not None for i in range(7)]
    assert kept == [True, False, False, True, False, False, True]
    # the bin hands over the sureness its loop computed: that one decides and is stored
    given = SampleStore(tmp_path / "g", SamplePolicy.parse("uncertain", NotSureRule(0.7)))
    assert given.offer(frame(), "cardboard", sure, None, sureness=0.95) is None
    row = given.offer(frame(), "cardboard", sure, None, sureness=0.5)
    assert given.rows()[0]["id"] == row and given.rows()[0]["confidence"] == pytest.approx(0.5)
    both = SampleStore(tmp_path / "b", SamplePolicy.parse("uncertain+every:3", NotSureRule(0.7)))
    kept = [both.offer(frame(i), "glass", sure if i != 4 else PROBS, None, i) is not None
            for i in range(7)]  # fmt: skip
    assert kept == [True, False, False, True, True, False, True]  # every third, and the unsure
    for bad in ("every:0", "uncertain+every:x", "all+every:2", "every:"):
        with pytest.raises(ConfigError, match=r"uncertain\+every:K"):
            SamplePolicy.parse(bad)
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


def images(root):
    return sorted(p.name for p in (root / "images").iterdir())


def journal(root):
    db = sqlite3.connect(root / "samples.sqlite")
    try:
        return db.execute("SELECT name, op FROM journal").fetchall()
    finally:
        db.close()


def test_files_the_store_did_not_write_survive_opening(tmp_path, caplog):
    root = tmp_path / "o"
    store = SampleStore(root)
    store.offer(frame(), "glass", PROBS, None)
    store.close()
    user = {"stray.jpg": b"x", "notes.txt": b"mine", "half.jpg.tmp": b"y"}
    for name, data in user.items():
        (root / "images" / name).write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="wastenet.runtime.store"):
        store = SampleStore(root)
    assert len(store.rows()) == 1
    for name, data in user.items():
        assert (root / "images" / name).read_bytes() == data
    [line] = [
        r.getMessage() for r in caplog.records if "unknown files left alone" in r.getMessage()
    ]
    assert "3 unknown files" in line and all(name in line for name in user)
    store.close()


def test_a_store_copied_without_its_wal_keeps_all_its_images(tmp_path):
    root, copy = tmp_path / "live", tmp_path / "copy"
    store = SampleStore(root)
    for i in range(2):
        store.offer(frame(i), "glass", PROBS, None, i)
    store.close()  # checkpointed into samples.sqlite
    store = SampleStore(root)
    for i in range(2, 5):
        store.offer(frame(i), "glass", PROBS, None, i)  # these rows are only in the -wal
    assert (root / "samples.sqlite-wal").stat().st_size > 0
    copy.mkdir()
    shutil.copy(root / "samples.sqlite", copy / "samples.sqlite")  # no -wal, no -shm
    shutil.copytree(root / "images", copy / "images")
    store.close()
    copied = SampleStore(copy)
    assert len(copied.rows()) == 2  # the three newest rows were lost with the -wal ...
    assert images(copy) == images(root) and len(images(copy)) == 5  # ... not their images
    copied.offer(frame(9), "glass", PROBS, None, 9)
    assert len(images(copy)) == 6
    copied.close()


SECOND_OPENER = textwrap.dedent(
    """
    import sys
    from wastenet.errors import WasteNetError
    from wastenet.runtime.store import SampleStore
    try:
        SampleStore(sys.argv[1])
    except WasteNetError as exc:
        print("refused:", exc)
    else:
        print("opened")
    """
)


def test_a_second_process_leaves_an_in_flight_write_alone(tmp_path, monkeypatch):
    root = tmp_path / "shared"
    store = SampleStore(root)
    answers = []

    def slow_write(handle, data):  # the first process is halfway through a JPEG ...
        handle.write(data[: len(data) // 2])
        handle.flush()
        assert [n for n in images(root) if n.endswith(".tmp")]
        opener = [sys.executable, "-c", SECOND_OPENER, str(root)]  # ... when a second one opens
        answers.append(subprocess.run(opener, capture_output=True, text=True, check=True).stdout)
        assert [n for n in images(root) if n.endswith(".tmp")]
        handle.write(data[len(data) // 2 :])

    monkeypatch.setattr(store, "_write_file", slow_write)
    row = store.offer(frame(), "glass", PROBS, None)
    assert row is not None and store.dropped == 0
    assert answers[0].startswith("refused:") and "in use by another process" in answers[0]
    assert str(os.getpid()) in answers[0]
    [r] = store.rows()
    assert (
        images(root) == [r["image_path"]]
        and cv2.imread(str(root / "images" / r["image_path"])) is not None
    )
    with pytest.raises(WasteNetError, match="in use by another process"):
        SampleStore(root)  # a second store object in the same process is refused too
    store.close()
    again = SampleStore(root)  # closing released the lock
    assert len(again.rows()) == 1
    again.close()


def test_disk_full_drops_samples_without_tmp_files_and_warns_once(tmp_path, monkeypatch, caplog):
    root = tmp_path / "full"
    store = SampleStore(root)

    def full_disk(handle, data):
        handle.write(data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "_write_file", full_disk)
    with caplog.at_level(logging.WARNING, logger="wastenet.runtime.store"):
        kept = [store.offer(frame(i), "glass", PROBS, None, i) for i in range(50)]
        assert kept == [None] * 50 and store.dropped == 50 and store.saved == 0
        assert images(root) == [] and journal(root) == []
        [warning] = [r.getMessage() for r in caplog.records]
        assert "No space left on device" in warning and "dropping samples" in warning
        monkeypatch.undo()  # space again: the next sample is kept
        assert store.offer(frame(), "glass", PROBS, None) is not None
    assert "after dropping 50 samples" in caplog.records[-1].getMessage()
    assert len(caplog.records) == 2 and len(images(root)) == 1 == len(store.rows())
    store.close()


class FixedEngine:
    """Always the same probabilities (a bin without a model file)."""

    def __init__(self, probs):
        from wastenet.meta import BundleMeta

        self.meta = BundleMeta("fixed", list(CLASSES), [12, 16], [0.5] * 3, [0.5] * 3)
        self.probs = np.asarray([probs], np.float32)

    def predict(self, batch):
        return self.probs


def test_a_full_disk_under_the_bin_loop_leaves_no_tmp_files(tmp_path, monkeypatch, caplog):
    from wastenet.runtime.app import BinOptions, run_bin

    def full_disk(handle, data):
        handle.write(data[:100])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(SampleStore, "_write_file", staticmethod(full_disk))
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), frame())
    opts = BinOptions(
        source=f"{folder}?hold=8&size=24x32",
        vote=3,
        threshold=0.5,
        gate=False,
        headless=True,
        run_dir=str(tmp_path / "run"),
        store=str(tmp_path / "s"),
        store_policy="all",
    )
    with caplog.at_level(logging.WARNING):
        summary = run_bin(opts, lambda line: None, engine=FixedEngine([0.9, 0.1, 0, 0, 0]))
    assert summary.frames == 8 and [a.door for a in summary.actuations] == [0]  # sorting went on
    assert images(tmp_path / "s") == []  # no .tmp files
    store_lines = [r for r in caplog.records if r.name == "wastenet.runtime.store"]
    assert len(store_lines) == 1 and "No space left" in store_lines[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


CRASH_MID_WRITE = textwrap.dedent(
    """
    import os, sys, numpy as np
    from wastenet.runtime import store as store_module
    store = store_module.SampleStore(sys.argv[1])
    probs = np.array([0.2, 0.2, 0.2, 0.2, 0.2], np.float32)
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    store.offer(image, "paper", probs, None, 0)
    real_replace = os.replace
    def half_then_die(handle, data):
        handle.write(data[:100]); handle.flush(); os._exit(0)
    def rename_then_die(src, dst):
        real_replace(src, dst); os._exit(0)
    if sys.argv[2] == "mid-write":
        store._write_file = half_then_die
    else:
        store_module.os.replace = rename_then_die
    store.offer(image, "glass", probs, None, 1)
    """
)


@pytest.mark.parametrize("moment", ["mid-write", "after-rename"])
def test_a_crash_leaves_nothing_half_done(tmp_path, moment):
    root = tmp_path / moment
    subprocess.run([sys.executable, "-c", CRASH_MID_WRITE, str(root), moment], check=True)
    assert [op for _, op in journal(root)] == ["write"]  # the process died mid-sample
    (root / "images" / "mine.jpg").write_bytes(b"x")
    store = SampleStore(root)
    names = [r["image_path"] for r in store.rows()]
    if moment == "mid-write":  # the temporary file is gone, the sample never existed
        assert [r["prediction"] for r in store.rows()] == ["paper"]
    else:  # the image was complete: its row is rolled forward, nothing is deleted
        assert [r["prediction"] for r in store.rows()] == ["paper", "glass"]
        assert cv2.imread(str(root / "images" / names[1])) is not None
    assert images(root) == sorted([*names, "mine.jpg"]) and journal(root) == []
    store.close()


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
    store = SampleStore(root)  # reopening settles what the crash left half-done
    names = [r["image_path"] for r in store.rows()]
    assert names[: len(rows)] == [name for name, _ in rows]
    assert len(names) - len(rows) in (0, 1)  # a sample whose image was in place is rolled forward
    assert images(root) == sorted(names) and journal(root) == []
    store.offer(frame(), "glass", PROBS, None)  # and the store goes on
    assert len(store.rows()) == len(names) + 1
