"""Frame sources: URI parsing, the CSI GStreamer pipeline, folder replay, latest-frame buffering,
reconnection with backoff."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PIL import Image

from wastenet.errors import SourceError
from wastenet.runtime.sources import (
    Frame,
    ImageFolderSource,
    LatestFrameBuffer,
    LatestFrameSource,
    ReconnectingSource,
    gstreamer_csi_pipeline,
    open_source,
    parse_source_uri,
)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "scene"
    root.mkdir()
    for i, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        Image.new("RGB", (80, 60), colour).save(root / f"{i}.png")
    return root


def test_parse_uris(tmp_path, folder):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    assert parse_source_uri("csi://0").kind == "csi"
    assert parse_source_uri("csi://1").target == "1"
    assert (parse_source_uri("/dev/video2").kind, parse_source_uri("/dev/video2").target) == (
        "v4l2",
        "2",
    )
    assert parse_source_uri("v4l2://3").target == "3"
    spec = parse_source_uri("rtsp://user:pw@cam.local:554/stream?fps=5")
    assert spec.kind == "rtsp" and spec.target.startswith("rtsp://user:pw@cam.local:554/stream")
    assert parse_source_uri(str(video)).kind == "video"
    spec = parse_source_uri(f"{folder}?fps=20&hold=10&gap=3")
    assert (spec.kind, spec.options) == ("folder", {"fps": "20", "hold": "10", "gap": "3"})


@pytest.mark.parametrize(
    "uri, message",
    [
        ("", "empty"),
        ("csi://abc", "must be a number"),
        ("v4l2://x", "v4l2://N"),
        ("/dev/videoX", "/dev/videoN"),
        ("ftp://host/x", "unknown source scheme"),
        ("/no/such/folder", "no such file or folder"),
    ],
)
def test_bad_uris_raise_clear_errors(uri, message):
    with pytest.raises(SourceError, match=message):
        parse_source_uri(uri)


def test_wrong_file_type_and_missing_camera(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("x")
    with pytest.raises(SourceError, match="not a video"):
        open_source(str(text))
    with pytest.raises(SourceError, match="no such camera"):
        open_source("/dev/video97")


def test_csi_pipeline_string():
    p = gstreamer_csi_pipeline(sensor_id=1, width=384, height=288, framerate=21, flip_method=2)
    assert p.startswith("nvarguscamerasrc sensor-id=1 !")
    assert "framerate=(fraction)21/1" in p
    assert "nvvidconv flip-method=2" in p
    assert "width=(int)384, height=(int)288, format=(string)BGRx" in p
    assert p.endswith("appsink drop=1 max-buffers=1")
    with pytest.raises(SourceError, match="flip-method"):
        gstreamer_csi_pipeline(flip_method=9)
    with pytest.raises(SourceError, match="width"):
        gstreamer_csi_pipeline(width=0)


def test_folder_replay_holds_items_with_gaps(folder):
    src = open_source(str(folder), hold=3, gap=2, size="40x30", background="#101010")
    frames = []
    while (frame := src.read()) is not None:
        frames.append(frame)
    assert len(frames) == 3 * (3 + 2)
    assert [f.index for f in frames] == list(range(15))
    truth = [src.item_at(i) for i in range(15)]
    assert truth == [None, None, 0, 0, 0, None, None, 1, 1, 1, None, None, 2, 2, 2]
    assert frames[0].image.shape == (30, 40, 3) and frames[0].image.dtype == np.uint8
    assert tuple(frames[0].image[0, 0]) == (16, 16, 16)  # the empty frame's colour
    assert tuple(frames[2].image[5, 5]) == (255, 0, 0)  # RGB, not BGR
    assert tuple(frames[7].image[5, 5]) == (0, 255, 0)


def test_folder_replay_paces_in_real_time_and_drops_late_frames(folder):
    src = ImageFolderSource(folder, fps=50, hold=10, size=(16, 12))
    t0 = time.perf_counter()
    for _ in range(10):
        src.read()
    assert 0.15 <= time.perf_counter() - t0 < 0.6  # 9 intervals of 20 ms
    time.sleep(0.2)  # a slow model: ~10 frames went by, a camera would not keep them
    frame = src.read()
    assert frame.index >= 15 and src.dropped >= 5


def test_folder_loop_and_errors(folder, tmp_path):
    src = ImageFolderSource(folder, hold=1, loop=2, size=(8, 8))
    assert sum(1 for _ in iter(src.read, None)) == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "empty")
    with pytest.raises(SourceError, match="hold"):
        ImageFolderSource(folder, hold=0)
    with pytest.raises(SourceError, match="whole number"):
        open_source(f"{folder}?hold=many")


def test_video_file_source(tmp_path):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for v in range(5):
        writer.write(np.full((24, 32, 3), (0, 0, 50 * v), np.uint8))  # BGR: red rises
    writer.release()
    src = open_source(str(path))
    frames = list(iter(src.read, None))
    src.close()
    assert len(frames) == 5
    assert frames[4].image[..., 0].mean() > 150 and frames[4].image[..., 2].mean() < 30


def test_latest_frame_buffer_keeps_only_newest():
    buf = LatestFrameBuffer()
    img = np.zeros((2, 2, 3), np.uint8)
    for i in range(5):
        buf.put(Frame(img, float(i), i))
    assert buf.get(0.1).index == 4
    assert buf.dropped == 4
    assert buf.get(0.05) is None  # each frame is taken once: no stale repeat


class FakeStream:
    """A camera producing frames faster than the consumer takes them."""

    def __init__(self, n: int, period: float) -> None:
        self.n, self.period, self.i = n, period, 0
        self.closed = threading.Event()

    def read(self):
        if self.i >= self.n:
            return None
        time.sleep(self.period)
        self.i += 1
        return Frame(np.zeros((2, 2, 3), np.uint8), time.perf_counter(), self.i - 1)

    def close(self):
        self.closed.set()


def test_slow_consumer_gets_the_latest_frame_not_a_queue():
    src = LatestFrameSource(FakeStream(200, 0.002), timeout_s=1.0)
    got = []
    for _ in range(5):
        frame = src.read()
        got.append(frame.index)
        time.sleep(0.03)  # the model is ~15x slower than the camera
    src.close()
    assert got == sorted(set(got))
    assert all(b - a >= 5 for a, b in zip(got, got[1:], strict=False))  # skipped stale frames
    assert src.inner.closed.is_set()


class FlakyCamera:
    def __init__(self, frames: int) -> None:
        self.left = frames

    def read(self):
        if self.left <= 0:
            return None
        self.left -= 1
        return Frame(np.zeros((2, 2, 3), np.uint8), 0.0, 0)

    def close(self):
        pass


def test_camera_that_disappears_is_retried_with_backoff_then_given_up():
    opened, sleeps, reports = [], [], []

    def factory():
        opened.append(1)
        if len(opened) == 2 or len(opened) >= 4:  # gone once, then for good
            raise SourceError("camera: cannot open")
        return FlakyCamera(frames=2)

    src = ReconnectingSource(
        factory,
        "camera",
        max_failures=3,
        backoff_s=0.5,
        on_report=reports.append,
        sleep=sleeps.append,
    )
    got = [src.read() for _ in range(5)]
    # 2 frames, fail -> reopen raises, fail -> reopen ok, 2 frames, 3 failed reopens -> give up
    assert [f is not None for f in got] == [True, True, True, True, False]
    assert sleeps == [0.5, 1.0, 0.5, 1.0, 2.0]
    assert any("gave up" in r for r in reports)
