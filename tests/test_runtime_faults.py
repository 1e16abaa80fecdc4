"""The bin under faults, with real parts: a local MJPEG server that stalls, a closed port,
SIGINT during a stalled open, a reader blocked in the driver, corrupt and large image folders.

Invariants: the process never crashes; no door stays open longer than hold_s + 1 s,
frames or not; run.json is written; a run ends within a bounded time; a camera lost
for good exits with ExitCode.SOURCE_LOST (3).
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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_COLOURS as COLOURS
from wastenet.cli import main
from wastenet.errors import ExitCode, SourceError
from wastenet.runtime import live
from wastenet.runtime.actuators import load_door_map, open_actuator
from wastenet.runtime.app import BinOptions, run_bin
from wastenet.runtime.sources import ImageFolderSource, LatestFrameSource, open_source

MAX_HOLD_S = 20.0  # no server thread outlives a test by more than this


@pytest.fixture(scope="module")
def model(flat_colour_model):
    from wastenet.accelerate import load_engine

    return flat_colour_model, load_engine(flat_colour_model)


class StallingMjpegServer:
    """A real multipart-JPEG HTTP server on 127.0.0.1.

    The first client gets ``stream_s`` seconds of frames, then the socket held silent;
    every later client (a reconnect) gets no answer at all: a stalled open.
    ``stream_s=None`` answers no one.
    """

    def __init__(self, colour=(40, 200, 90), stream_s: float | None = 1.5, fps: float = 20.0):
        import cv2

        ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), colour[::-1], np.uint8))
        self.jpeg, self.stream_s, self.fps = jpeg.tobytes(), stream_s, fps
        self.done, self.asked = threading.Event(), threading.Event()
        self.requests, self.stream_end_t = 0, None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                outer.asked.set()
                try:
                    if outer.requests == 1 and outer.stream_s is not None:
                        outer._stream(self)
                except OSError:  # the client went away
                    return
                outer.done.wait(MAX_HOLD_S)  # silent, socket open

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream"

    def _stream(self, handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < self.stream_s and not self.done.is_set():
            head = (
                f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.jpeg)}\r\n\r\n"
            )
            handler.wfile.write(head.encode() + self.jpeg + b"\r\n")
            handler.wfile.flush()
            self.stream_end_t = time.perf_counter()
            time.sleep(1 / self.fps)

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fast_reconnect(monkeypatch):
    """Shorter waits than a bin's defaults, so a lost camera is given up on in seconds."""
    monkeypatch.setitem(live.LIVE, "open_timeout_s", 1.0)
    monkeypatch.setitem(live.LIVE, "stall_s", 1.0)
    monkeypatch.setitem(live.RECONNECT, "max_failures", 3)
    monkeypatch.setitem(live.RECONNECT, "backoff_s", 0.2)


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def live_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


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
    run = json.loads((run_dir / "run.json").read_text())
    assert run["summary"]["source_lost"] == summary.source_lost

    hold = load_door_map().hold_s
    commands = [json.loads(line) for line in record.read_text().splitlines()]
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


def test_door_timer_closes_doors_without_frames():
    doors = load_door_map()
    actuator = open_actuator("sim://?delay=0", doors)
    assert actuator.start_timer() and not actuator.start_timer()  # once
    actuator.open_door(0, hold_s=0.2)
    assert wait_until(lambda: actuator.open_doors() == [], 1.0)  # no tick() called
    opened, closed = actuator.commands
    assert (opened.action, closed.action) == ("open", "close")
    assert 0.2 <= closed.t - opened.t < 0.2 + 0.3
    actuator.close()
    assert not live_threads("door-timer")


def write_scene(folder, names, corrupt=()):
    folder.mkdir()
    for i, name in enumerate(names):
        target = folder / f"{i:02d}_{name}.png"
        if name in corrupt:
            target.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
        else:
            Image.new("RGB", (64, 48), COLOURS[name]).save(target)
    return folder


def test_a_corrupt_image_is_skipped_with_one_warning(model, tmp_path, caplog):
    from wastenet.runtime.gate import PresenceGate
    from wastenet.runtime.loop import BinLoop
    from wastenet.runtime.vote import MajorityVote

    _, engine = model
    folder = write_scene(tmp_path / "scene", ["glass", "bad", "metal", "paper"], corrupt={"bad"})
    doors = load_door_map()
    source = ImageFolderSource(folder, hold=8, gap=6, loop=2, size=(64, 48), background="#1e1e1e")
    actuator = open_actuator("sim://", doors)
    loop = BinLoop(source, engine, MajorityVote(3, 0.5), actuator, doors, PresenceGate())
    with caplog.at_level(logging.WARNING):
        summary = loop.run()
    assert summary.frames == 2 * 4 * 14  # the run went through, twice
    assert [a.label for a in summary.actuations] == ["glass", "metal", "paper"] * 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "01_bad.png" in warnings[0].getMessage()
    assert source.item_at(14 + 6) is None  # the skipped image's turn shows an empty frame


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
        source = ImageFolderSource(folder, hold=2, size=(384, 288))
        assert len(source._cache) == 0  # nothing decoded before the first frame
        frames = sum(1 for _ in iter(source.read, None))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert frames == 100
    assert len(source._cache) <= source.CACHED_IMAGES
    all_decoded = 50 * 384 * 288 * 3  # 16.6 MB: what the folder cost before
    assert peak < all_decoded / 3, f"peak {peak / 1e6:.1f} MB"
