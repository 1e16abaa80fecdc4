"""The bin end to end: a replayed scene through a real ONNX model and simulated servos,
the measured queue delay against equation 1, the MJPEG stream, the CLI and shutdown."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import BACKGROUND, item_image
from conftest import CLASS_COLOURS as COLOURS
from wastenet.analysis import latency
from wastenet.classes import NOT_SURE
from wastenet.cli import main
from wastenet.runtime.actuators import open_actuator
from wastenet.runtime.app import BinOptions, run_bin
from wastenet.runtime.doors import load_door_map
from wastenet.runtime.gate import PresenceGate
from wastenet.runtime.loop import BinLoop
from wastenet.runtime.sources import ImageFolderSource
from wastenet.runtime.vote import MajorityVote

SCENE = ["cardboard", "glass", "metal", "paper", "plastic", "plastic", "cardboard"]


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory):
    pytest.importorskip("onnx")
    from wastenet.accelerate import load_engine
    from wastenet.runtime.testing import write_colour_model

    path = tmp_path_factory.mktemp("model") / "colour.onnx"
    examples = {c: [item_image(col, seed=s) for s in range(6)] for c, col in COLOURS.items()}
    write_colour_model(path, examples, input_hw=(48, 64))
    return path, load_engine(path)


@pytest.fixture
def scene_folder(tmp_path):
    folder = tmp_path / "scene"
    folder.mkdir()
    for i, name in enumerate(SCENE):
        Image.fromarray(item_image(COLOURS[name], seed=100 + i)).save(
            folder / f"{i:02d}_{name}.png"
        )
    return folder


class DelayedEngine:
    """A real engine slowed to a given inference time, to replay the paper's 17 IPS Jetson."""

    def __init__(self, inner, seconds: float) -> None:
        self.inner, self.seconds, self.meta = inner, seconds, inner.meta

    def predict(self, batch):
        t0 = time.perf_counter()
        out = self.inner.predict(batch)
        time.sleep(max(0.0, self.seconds - (time.perf_counter() - t0)))
        return out


def test_replayed_scene_opens_one_correct_door_per_item(colour_model, scene_folder):
    _, engine = colour_model
    doors = load_door_map()
    doors.hold_s = 0.0  # each door closes on the next frame, so every item must move a servo
    source = ImageFolderSource(scene_folder, hold=12, gap=6, background="#1e1e1e", size_hw=(48, 64))
    actuator = open_actuator("sim://", doors)
    loop = BinLoop(source, engine, MajorityVote(10, 0.7), actuator, doors, PresenceGate())
    summary = loop.run()
    assert summary.frames == len(SCENE) * 18
    acts = summary.actuations
    assert [a.label for a in acts] == SCENE  # one decision per item, in order, none repeated
    assert [a.door for a in acts] == [doors.door_for(name) for name in SCENE]
    assert all(a.ok for a in acts)
    for k, act in enumerate(acts):  # decided while item k was in view, after N/2+1 of its frames
        assert source.item_at(act.frame_index) == k
        assert act.frame_index - (k * 18 + 6) == 5
    opens = [c for c in actuator.commands if c.action == "open"]
    assert [c.door for c in opens] == [doors.door_for(name) for name in SCENE]
    assert summary.inferred == len(SCENE) * 12  # empty frames were never inferred


def test_run_summary_keeps_recent_decisions_only(colour_model, scene_folder, monkeypatch):
    """A bin runs for weeks: the summary counts every decision but keeps only the last few."""
    from wastenet.runtime import events

    monkeypatch.setattr(events, "RECENT", 2)
    _, engine = colour_model
    doors = load_door_map()
    source = ImageFolderSource(scene_folder, hold=12, gap=6, background="#1e1e1e", size_hw=(48, 64))
    loop = BinLoop(source, engine, MajorityVote(10, 0.7), open_actuator("sim://", doors), doors,
                   PresenceGate())  # fmt: skip
    summary = loop.run()
    assert summary.decisions == len(SCENE) > 2
    assert [a.label for a in summary.actuations] == SCENE[-2:]
    assert len(summary.inference_gaps) == 2


def test_ambiguous_items_open_no_door(colour_model, tmp_path):
    """Items halfway between two classes get ~50 % each: "not sure", which never opens a door."""
    _, engine = colour_model
    folder = tmp_path / "ambiguous"
    folder.mkdir()
    for i, (a, b) in enumerate([("cardboard", "metal"), ("glass", "plastic"), ("paper", "metal")]):
        colour = tuple((np.array(COLOURS[a]) + COLOURS[b]) // 2)
        Image.fromarray(item_image(colour, seed=200 + i)).save(folder / f"{i}.png")
    doors = load_door_map()
    source = ImageFolderSource(folder, hold=12, gap=6, background="#1e1e1e", size_hw=(48, 64))
    seen = []
    loop = BinLoop(
        source,
        engine,
        MajorityVote(10, 0.7),
        open_actuator("sim://", doors),
        doors,
        PresenceGate(),
        hooks=[("spy", seen.append)],
    )
    summary = loop.run()
    assert summary.inferred == 36
    assert {r.label for r in seen if r.present} == {NOT_SURE}
    assert list(summary.actuations) == [] and summary.decisions == 0


def test_measured_queue_delay_matches_equation_1(colour_model, scene_folder, tmp_path):
    """Paper section 5.6: N=10 at 17 IPS -> (10/2 + 1)/17 = 0.353 s before the door command."""
    path, engine = colour_model
    ips, n = 17.0, 10
    scene = sorted(scene_folder.iterdir())[:2]
    folder = tmp_path / "two"
    folder.mkdir()
    for p in scene:
        (folder / p.name).write_bytes(p.read_bytes())
    run_dir = tmp_path / "run"
    opts = BinOptions(
        source=f"{folder}?fps=100&hold=70&gap=25&background=%231e1e1e&size=48x64",
        actuator="sim://",
        vote=n,
        threshold=0.7,
        headless=True,
        run_dir=str(run_dir),
    )
    lines = []
    summary = run_bin(opts, lines.append, engine=DelayedEngine(engine, 1 / ips))
    assert [a.label for a in summary.actuations] == ["cardboard", "glass"]
    measured = latency.compare_run(latency.load_run(run_dir))
    frame_time = 1 / measured["ips"]
    # the engine paces the loop: never faster than 17 IPS; slower only on a busy machine,
    # which is why equation 1 is checked at the rate the run measured, not at 17
    assert ips / 3 < measured["ips"] <= ips * 1.05
    assert measured["eq1_queue_s"] == pytest.approx(latency.queue_delay(n, measured["ips"]))
    # equation 1 counts frames: the door command follows the (N/2 + 1)-th inferred frame of
    # the item, give or take the vote's own quantisation. Counted, not timed: on a busy CPU
    # one stalled frame in the window moves the seconds by more than a frame time
    frames = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    for act in latency.load_run(run_dir)["actuations"]:
        window = [
            f for f in frames if f.get("present") and act["onset_t"] <= f["t"] <= act["command_t"]
        ]
        assert abs(len(window) - (n / 2 + 1)) <= 1, (len(window), act)
    # and in seconds, at the rate the run measured, within what a loaded machine allows
    assert abs(measured["measured_queue_s"] - measured["eq1_queue_s"]) < 4 * frame_time
    assert measured["measured_total_s"] == pytest.approx(measured["measured_queue_s"] + 0.646)
    assert any("latency: queue" in line for line in lines)


def test_latency_equations_match_the_paper():
    assert latency.queue_delay(10, 17) == pytest.approx(0.354, abs=0.002)  # 6 * 0.059 s
    assert latency.servo_latency(1.0, 10, 17) == pytest.approx(0.646, abs=0.002)
    assert latency.equation1(10, 17, t_cts=1.0, n=10) == pytest.approx(1.0)
    assert latency.equation2(10, 17) == pytest.approx(0.353 + 0.646, abs=0.002)
    assert latency.equation1(20, 17) - latency.equation1(10, 17) == pytest.approx(5 / 17)


def test_mjpeg_stream_serves_jpeg_parts():
    from wastenet.runtime.overlay import MjpegServer, draw_overlay

    server = MjpegServer(port=0)
    try:
        frame = draw_overlay(np.zeros((48, 64, 3), np.uint8), "glass", 0.93, 17.0, [1])
        server.publish(frame)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/stream", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            assert resp.readline().strip() == b"--wastenetframe"
            headers = {}
            while (line := resp.readline().strip()) != b"":
                key, value = line.decode().split(":", 1)
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            jpeg = resp.read(int(headers["content-length"]))
        assert jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
        import cv2

        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert decoded.shape == (48, 64, 3) and decoded[:10].mean() < decoded[20:].mean() + 255
    finally:
        server.close()


def test_overlay_draws_on_a_copy():
    from wastenet.runtime.overlay import draw_overlay

    image = np.full((96, 128, 3), 120, np.uint8)
    out = draw_overlay(image, "metal", 0.88, 12.5, [2])
    assert out.shape == image.shape and (image == 120).all()
    assert (out[:20] != 120).any()


def test_cli_without_model_says_how_to_get_one(tmp_path, capsys):
    code = main(["run", "--model", str(tmp_path / "none.onnx"), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "no model there" in err and "Traceback" not in err
    import argparse
    import re

    from wastenet.cli import build_parser

    actions = build_parser()._actions
    commands = next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices
    named = re.findall(r"\bwastenet (\w[\w-]*)", err)
    assert {"train", "export"} <= set(named) <= set(commands)  # the commands it names exist


def test_cli_bad_source_is_a_clear_error(colour_model, tmp_path, capsys):
    path, _ = colour_model
    code = main(
        ["run", "--model", str(path), "--source", "ftp://x", "--run-dir", str(tmp_path / "r")]
    )
    assert code == 2 and "unknown source scheme" in capsys.readouterr().err


def test_cli_run_and_latency_on_a_scene(colour_model, scene_folder, tmp_path, capsys):
    path, _ = colour_model
    run_dir = tmp_path / "run"
    store = tmp_path / "store"
    code = main(
        [
            "run",
            "--model",
            str(path),
            "--source",
            f"{scene_folder}?hold=12&gap=6&background=%231e1e1e",
            "--run-dir",
            str(run_dir),
            "--store",
            str(store),
            "--store-policy",
            "every:5",
            "--headless",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("-> door") == len(SCENE)
    assert "| inference |" in out and "| store |" in out
    assert (run_dir / "run.json").is_file()
    assert main(["latency", "--run", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "| queue |" in out and f"{len(SCENE)} actuations" in out
    assert main(["latency", "--n", "10", "--ips", "17"]) == 0
    assert "| 10 * | 0.353 | 0.646 | 0.999 |" in capsys.readouterr().out


@pytest.mark.slow
def test_sigterm_shuts_down_cleanly(colour_model, scene_folder, tmp_path):
    path, _ = colour_model
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wastenet.cli",
            "run",
            "--model",
            str(path),
            "--source",
            f"{scene_folder}?fps=30&hold=12&gap=6&loop=0&background=%231e1e1e",
            "--run-dir",
            str(run_dir),
            "--store",
            str(tmp_path / "store"),
            "--store-policy",
            "all",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 20
    while (
        not (run_dir / "timings.jsonl").is_file()
        or (run_dir / "timings.jsonl").stat().st_size < 500
    ):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "frames" in out and "| stage |" in out and "Traceback" not in err
    assert (run_dir / "run.json").is_file()


class FixedEngine:
    """A tiny in-test engine: always the same probabilities."""

    def __init__(self, probs):
        from wastenet.meta import BundleMeta

        self.meta = BundleMeta("fixed", list(COLOURS), [12, 16], [0.5] * 3, [0.5] * 3)
        self.probs = np.asarray([probs], np.float32)

    def predict(self, batch):
        assert batch.shape == (1, 3, 12, 16) and batch.dtype == np.float32
        return self.probs


def test_camera_lost_for_good_ends_the_run_cleanly():
    from wastenet.errors import SourceError
    from wastenet.runtime.sources import Frame, ReconnectingSource

    frames = iter([Frame(np.zeros((12, 16, 3), np.uint8), float(i), i) for i in range(4)])

    class Camera:
        def read(self):
            return next(frames, None)

        def close(self):
            pass

    opened = []

    def factory():
        opened.append(1)
        if len(opened) > 1:
            raise SourceError("/dev/video0: cannot open")
        return Camera()

    reports = []
    source = ReconnectingSource(
        factory,
        "cam",
        max_failures=2,
        backoff_s=0.0,
        on_report=reports.append,
        sleep=lambda s: None,
    )
    doors = load_door_map()
    loop = BinLoop(
        source,
        FixedEngine([0, 0, 1, 0, 0]),
        MajorityVote(3, 0.5),
        open_actuator("sim://", doors),
        doors,
    )
    summary = loop.run()
    assert summary.frames == 4 and [a.label for a in summary.actuations] == ["metal"]
    assert len(opened) == 3 and "gave up" in reports[-1]


def test_store_fault_does_not_stop_the_bin(tmp_path, monkeypatch):
    from wastenet.runtime import store as store_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.SampleStore, "_write_jpeg", full_disk)
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (16, 12), (200, 10, 10)).save(folder / "a.png")
    opts = BinOptions(
        source=f"{folder}?hold=5&size=24x32",
        vote=3,
        threshold=0.5,
        gate=False,
        headless=True,
        run_dir=str(tmp_path / "run"),
        store=str(tmp_path / "s"),
        store_policy="all",
    )
    summary = run_bin(opts, lambda line: None, engine=FixedEngine([0.9, 0.1, 0, 0, 0]))
    assert summary.frames == 5 and [a.door for a in summary.actuations] == [0]


def test_crop_to_object_classifies_the_item_not_the_tray(colour_model):
    """A small plastic item on the dark floor of a tray whose other half holds a fixed
    cardboard-coloured board: the whole frame never reads as plastic, the crop around
    what changed does."""
    from wastenet.runtime.doors import parse_door_map
    from wastenet.runtime.testing import FrameReplay

    _, engine = colour_model
    rng = np.random.default_rng(0)

    def frame(item: bool) -> np.ndarray:
        img = np.clip(np.array(BACKGROUND) + rng.integers(-4, 5, (192, 256, 3)), 0, 255)
        img[:, :128] = COLOURS["cardboard"]
        if item:
            img[20:60, 170:230] = COLOURS["plastic"]
        return img.astype(np.uint8)

    frames = [frame(False)] * 5 + [frame(True)] * 12
    labels = {}
    for crop in (False, True):
        doors = load_door_map()
        loop = BinLoop(
            FrameReplay(frames), engine, MajorityVote(10, 0.7), open_actuator("sim://", doors), doors,
            PresenceGate(), crop_to_object=crop,
        )  # fmt: skip
        results = []
        loop.hooks.append(("collect", results.append))
        loop.run()
        present = [r for r in results if r.present]
        labels[crop] = {r.label for r in present}
        if crop:
            x0, y0, x1, y1 = present[0].crop_box
            assert x0 <= 170 and x1 >= 230 and y0 <= 20 and y1 >= 60
            assert (x1 - x0) < 128  # a crop, not the frame
    assert "plastic" not in labels[False]
    assert labels[True] == {"plastic"}
    with pytest.raises(Exception, match="crop_to_object"):
        parse_door_map({"doors": {0: {"channel": 0}}, "classes": {}, "crop_to_object": "yes"})
