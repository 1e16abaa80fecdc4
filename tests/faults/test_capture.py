"""Capture under faults: a real local MJPEG server that stalls, drops mid-frame, sends
garbage or never answers; SIGINT during a stalled open; a reader blocked in the driver;
image folders with undecodable, vanished and blocking entries, and large ones.

Invariants: the process never crashes; no door stays open longer than hold_s + 1 s,
frames or not; run.json is written; a run ends within a bounded time; a camera lost
for good exits with ExitCode.SOURCE_LOST (3); a stream that comes back is recovered.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from faults.conftest import HOLD_S, write_scene
from faults.invariants import check_doors, live_threads, read_moves, run_record, wait_until
from faults.servers import MAX_HOLD_S, ScriptedMjpegServer, StallingMjpegServer
from wastenet.cli import main
from wastenet.errors import ExitCode, SourceError
from wastenet.runtime import live
from wastenet.runtime.actuators import open_actuator
from wastenet.runtime.app import BinOptions, run_bin
from wastenet.runtime.doors import load_door_map
from wastenet.runtime.sources import ImageFolderSource, LatestFrameSource, open_source


def test_stalled_stream_closes_doors_on_time_and_ends_as_source_lost(
    model, tmp_path, fast_reconnect
):
    _, engine = model
    server = StallingMjpegServer(stream_s=1.5)
    record = tmp_path / "cmds.jsonl"
    run_dir = tmp_path / "run"
    opts = BinOptions(
        source=server.url,
        actuator=f"sim://?record={record}",
        vote=3,
        threshold=0.5,
        gate=False,
        headless=True,
        run_dir=str(run_dir),
    )
    try:
        t0 = time.perf_counter()
        summary = run_bin(opts, lambda line: None, engine=engine)
        elapsed = time.perf_counter() - t0
    finally:
        server.close()
    assert elapsed < 12.0  # frames 1.5 s, stall 1 s, 3 stalled reopens of 1 s + backoff
    assert summary.frames >= 5 and server.requests >= 2  # it streamed, then reconnected
    assert summary.source_lost and "gave up after 3 reconnect attempts" in summary.source_lost
    run = run_record(run_dir)
    assert run["summary"]["source_lost"] == summary.source_lost
    assert (run["status"], run["exit_code"]) == ("source lost", ExitCode.SOURCE_LOST)

    hold = load_door_map().hold_s
    every = [json.loads(line) for line in record.read_text().splitlines()]
    homing = [c for c in every if c["action"] == "home"]
    assert [c["door"] for c in homing] == [0, 1, 2] and every[:3] == homing  # closed at start
    commands = [c for c in every if c["action"] != "home"]
    opens = [c for c in commands if c["action"] == "open"]
    assert [c["door"] for c in opens] == [1]  # glass: one decision, one door
    for door in {c["door"] for c in commands}:
        mine = [c for c in commands if c["door"] == door]
        assert mine[-1]["action"] == "close"
        for opened, closed in zip(mine[::2], mine[1::2], strict=True):
            assert (opened["action"], closed["action"]) == ("open", "close")
            assert closed["t"] - opened["t"] <= hold + 1.0
    # that close came while no frame came: from the wall-clock timer, not a frame
    assert commands[-1]["t"] > server.stream_end_t + 0.5
    # every reader released its capture itself and ended: nothing is left inside the driver
    assert wait_until(lambda: not live_threads("frame-reader"), 5.0)
    assert not live_threads("door-timer")


def test_a_stream_that_drops_mid_frame_and_sends_garbage_is_recovered(
    model, tmp_path, doors, fast_reconnect, caplog
):
    _, engine = model
    script = [("drop", 8), ("garbage", 10), ("good", None)]
    server = ScriptedMjpegServer(script, colour=(40, 200, 90))
    record, run_dir = tmp_path / "cmds.jsonl", tmp_path / "run"
    opts = BinOptions(
        source=server.url,
        actuator=f"sim://?delay=0&record={record}",
        doors=str(doors),
        vote=3,
        threshold=0.5,
        gate=False,
        headless=True,
        run_dir=str(run_dir),
        max_frames=40,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="wastenet.runtime.live"):
            summary = run_bin(opts, lambda line: None, engine=engine)
    finally:
        server.close()
    assert server.requests >= 3 and summary.frames == 40  # reconnected twice, then ran on
    assert summary.source_lost is None
    assert any("reconnecting" in r.getMessage() for r in caplog.records)
    assert run_record(run_dir)["status"] == "done"
    assert [a.label for a in summary.actuations][:1] == ["glass"]
    moves = read_moves(record)
    assert check_doors(moves, HOLD_S)  # opened (glass), closed within hold_s + 1 s
    assert wait_until(lambda: not live_threads("frame-reader"), 5.0)


def test_camera_that_never_answers_exits_with_source_lost(model, tmp_path, capsys, monkeypatch):
    path, _ = model
    monkeypatch.setitem(live.RECONNECT, "max_failures", 2)
    monkeypatch.setitem(live.RECONNECT, "backoff_s", 0.05)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = tmp_path / "run"
    t0 = time.perf_counter()
    code = main(
        ["run", "--model", str(path), "--source", f"http://127.0.0.1:{port}/stream",
         "--run-dir", str(run_dir), "--headless", "--no-gate"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == ExitCode.SOURCE_LOST == 3
    assert "source lost" in err and "gave up after 2 reconnect attempts" in err
    assert "Traceback" not in err
    assert (run_dir / "run.json").is_file()
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.slow
def test_sigint_during_a_stalled_open_ends_the_run_within_a_second(model, tmp_path):
    path, _ = model
    server = StallingMjpegServer(stream_s=None)  # accepts, never answers: a stalled open
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wastenet.cli", "run", "--model", str(path), "--source",
         server.url, "--run-dir", str(run_dir), "--headless", "--no-gate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert server.asked.wait(30), "the bin never asked the stream for frames"
        time.sleep(0.3)  # inside the open now (the default open timeout is 10 s)
        assert proc.poll() is None
        t0 = time.perf_counter()
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=15)
        stopped_in = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    assert proc.returncode == ExitCode.OK, err
    assert "Traceback" not in err and "| stage |" in out
    assert (run_dir / "run.json").is_file()
    assert stopped_in < 2.5  # ~1 s honoured, plus the interpreter's own exit


def test_a_stop_event_ends_a_stalled_open_at_once():
    server = StallingMjpegServer(stream_s=None)
    stop = threading.Event()
    try:
        source = open_source(server.url, stop=stop)
        assert server.asked.wait(10)
        threading.Timer(0.3, stop.set).start()
        t0 = time.perf_counter()
        assert source.read() is None
        assert time.perf_counter() - t0 < 1.0
        assert source.lost is None  # stopped, not lost
        t0 = time.perf_counter()
        source.close()
        assert time.perf_counter() - t0 < 1.0
    finally:
        server.close()


class BlockedCapture:
    """A capture whose read() blocks in the 'driver' until released, and that notes
    whether it was closed while a read was still inside it (the old SIGSEGV)."""

    def __init__(self) -> None:
        self.in_read, self.unblock, self.closed = (
            threading.Event(),
            threading.Event(),
            threading.Event(),
        )
        self.reading = False
        self.closed_during_read = False

    def read(self):
        self.reading = True
        self.in_read.set()
        self.unblock.wait(MAX_HOLD_S)
        self.reading = False
        return None

    def close(self):
        self.closed_during_read = self.reading
        self.closed.set()


def test_a_capture_is_never_released_under_a_blocked_read():
    capture = BlockedCapture()
    source = LatestFrameSource(capture, timeout_s=0.3, name="cam")
    assert capture.in_read.wait(2)
    t0 = time.perf_counter()
    assert source.read() is None  # read() is bounded even though the driver is not
    assert 0.25 < time.perf_counter() - t0 < 1.0
    assert source.error == "cam: no frame for 0.3 s"
    t0 = time.perf_counter()
    source.close()
    assert time.perf_counter() - t0 < live.JOIN_S + 0.5
    assert not capture.closed.is_set()  # left to the reader, which is still inside read()
    capture.unblock.set()
    assert capture.closed.wait(2) and not capture.closed_during_read  # released by the reader
    assert wait_until(lambda: not source.running, 2.0)


def test_a_corrupt_image_is_skipped_with_one_warning(model, tmp_path, caplog):
    from wastenet.runtime.gate import PresenceGate
    from wastenet.runtime.loop import BinLoop
    from wastenet.runtime.vote import MajorityVote

    _, engine = model
    folder = write_scene(tmp_path / "scene", ["glass", "bad", "metal", "paper"], corrupt={"bad"})
    doors = load_door_map()
    source = ImageFolderSource(
        folder, hold=8, gap=6, loop=2, size_hw=(48, 64), background="#1e1e1e"
    )
    actuator = open_actuator("sim://", doors)
    loop = BinLoop(source, engine, MajorityVote(3, 0.5), actuator, doors, PresenceGate())
    with caplog.at_level(logging.WARNING):
        summary = loop.run()
    assert summary.frames == 2 * 4 * 14  # the run went through, twice
    assert [a.label for a in summary.actuations] == ["glass", "metal", "paper"] * 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "01_bad.png" in warnings[0].getMessage()
    assert source.item_at(14 + 6) is None  # the skipped image's turn shows an empty frame


def test_a_folder_of_traps_is_sorted_around(model, tmp_path, doors, caplog):
    """A FIFO named like an image (opening it blocks for ever), a folder named x.jpg, an empty
    file, a truncated JPEG and an image deleted after the bin listed the folder."""
    path, _ = model
    folder = write_scene(tmp_path / "scene", ["glass", "metal", "paper"])
    os.mkfifo(folder / "00a_pipe.jpg")
    (folder / "00b_folder.jpg").mkdir()
    (folder / "00c_empty.png").write_bytes(b"")
    jpeg = folder / "00d_truncated.jpg"
    Image.new("RGB", (64, 48), (40, 200, 90)).save(jpeg, quality=95)
    jpeg.write_bytes(jpeg.read_bytes()[:300])
    source = ImageFolderSource(folder, hold=8, gap=6, size_hw=(48, 64), background="#1e1e1e")
    assert not any(p.name in ("00a_pipe.jpg", "00b_folder.jpg") for p in source.files)
    (folder / "01_metal.png").unlink()  # gone between listing and reading
    run_dir = tmp_path / "run"
    opts = BinOptions(model=str(path), doors=str(doors), vote=3, threshold=0.5, headless=True,
                      run_dir=str(run_dir), actuator="sim://?delay=0")  # fmt: skip
    with caplog.at_level(logging.WARNING):
        from wastenet.runtime import sources

        with pytest.MonkeyPatch.context() as mp:  # the folder as listed above
            mp.setattr(sources, "open_source", lambda *a, **k: source)
            summary = run_bin(opts, lambda line: None)
    assert [a.label for a in summary.actuations] == ["glass", "paper"]
    skipped = sorted(source.files[i].name for i in source.skipped)
    assert skipped == ["00c_empty.png", "00d_truncated.jpg", "01_metal.png"]
    warned = [r.getMessage() for r in caplog.records if r.name == "wastenet.runtime.sources"]
    assert len(warned) == 3 and run_record(run_dir)["status"] == "done"


def test_a_folder_with_no_decodable_image_is_an_error(tmp_path):
    folder = write_scene(tmp_path / "scene", ["glass", "metal"], corrupt={"glass", "metal"})
    source = ImageFolderSource(folder)
    with pytest.raises(SourceError, match="none of the 2 images could be decoded"):
        list(iter(source.read, None))


def test_folder_source_decodes_lazily_in_flat_memory(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(50):
        base = rng.integers(0, 256, 3)
        img = np.clip(base + rng.integers(-20, 21, (384, 512, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:02d}.jpg", quality=80)
    tracemalloc.start()
    try:
        source = ImageFolderSource(folder, hold=2, size_hw=(288, 384))
        assert len(source._cache) == 0  # nothing decoded before the first frame
        frames = sum(1 for _ in iter(source.read, None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == 100
    assert len(source._cache) <= source.CACHED_IMAGES
    all_decoded = 50 * 384 * 288 * 3  # 16.6 MB: what the folder cost before
    assert peak < all_decoded / 3, f"peak {peak / 1e6:.1f} MB"
