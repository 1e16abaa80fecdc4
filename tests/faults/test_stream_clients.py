"""The bin's MJPEG stream under hostile clients: one that asks and never reads, one that
connects and never asks, one that leaves mid-frame, beside a well-behaved one.

Invariants: the bin keeps its pace and ends as asked (exit 0, run.json "done"); the
good client gets frames all along; no server thread is left behind once the clients'
timeout has passed; nothing is printed as an error.
"""

from __future__ import annotations

import socket
import time

import numpy as np
from PIL import Image

from faults.conftest import HOLD_S
from faults.invariants import check_doors, read_moves, run_record, wait_until
from faults.servers import Reader, free_port, reset, stream_client
from wastenet.runtime import overlay
from wastenet.runtime.app import BinOptions, run_bin

SERVER_THREAD = "(process_request_thread)"


def server_threads() -> int:
    import threading

    return sum(1 for t in threading.enumerate() if t.name.endswith(SERVER_THREAD))


def noisy_scene(folder, n=3):
    """Large noisy frames: each JPEG of the overlay is tens of KB, so a client that does not
    read fills its socket within a few frames."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (288, 384, 3), dtype=np.uint8)).save(
            folder / f"{i}.png"
        )
    return folder


def test_clients_that_never_read_never_ask_or_leave_mid_frame_cost_the_bin_nothing(
    model, tmp_path, doors, monkeypatch, capfd
):
    _, engine = model
    monkeypatch.setattr(overlay, "CLIENT_TIMEOUT_S", 0.5)
    port = free_port()
    scene = noisy_scene(tmp_path / "scene")
    record, run_dir = tmp_path / "cmds.jsonl", tmp_path / "run"
    clients: dict[str, object] = {}
    fps, seconds = 25, 2.4

    def connect_clients(result):  # a hook: the server is up once frames flow
        if result.frame.index != 2:
            return
        clients["good"] = Reader(port)
        clients["good"].start()
        clients["stalled"] = stream_client(port, rcvbuf=2048)  # asks, never reads
        clients["silent"] = stream_client(port, request=False)  # never even asks
        leaver = stream_client(port)
        leaver.recv(3000)  # the headers and part of the first frame ...
        reset(leaver)  # ... then gone

    from wastenet.runtime import app

    real_display_hooks = app._display_hooks
    monkeypatch.setattr(
        app,
        "_display_hooks",
        lambda *a: [*real_display_hooks(*a), ("clients", connect_clients)],
    )
    opts = BinOptions(
        source=f"{scene}?fps={fps}&hold={int(fps * seconds / 3)}&size=288x384",
        actuator=f"sim://?delay=0&record={record}",
        doors=str(doors),
        gate=False,
        headless=True,
        mjpeg_port=port,
        run_dir=str(run_dir),
    )
    t0 = time.perf_counter()
    summary = run_bin(opts, lambda line: None, engine=engine)
    elapsed = time.perf_counter() - t0
    good = clients["good"]
    assert summary.frames >= 0.6 * fps * seconds  # the pace held (late frames are skipped)
    assert elapsed < seconds + 3.0
    assert good.parts >= summary.frames / 3, (good.parts, summary.frames)  # served all along
    assert run_record(run_dir)["status"] == "done"
    check_doors(read_moves(record), HOLD_S)
    # every client's thread ended: closed by the bin, or timed out (stalled, silent)
    assert wait_until(lambda: server_threads() == 0, overlay.CLIENT_TIMEOUT_S + 3.0), (
        server_threads()
    )
    for name in ("stalled", "silent"):
        sock = clients[name]
        assert isinstance(sock, socket.socket)
        sock.close()
    good.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception occurred" not in err
