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
    spec = parse_source_uri(f"{folder}?fps=20&hold=10&gap=3&size=48x64")
    assert (spec.kind, spec.options) == (
        "folder",
        {"fps": 20.0, "hold": 10, "gap": 3, "size": (48, 64)},  # checked and converted (H, W)
    )
    spec = parse_source_uri("csi://0?width=640&height=480&flip-method=2")
    assert spec.options == {"width": 640, "height": 480, "flip_method": 2}
    assert parse_source_uri("rtsp://cam/stream?channel=1").options == {}  # the server's query


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


@pytest.mark.parametrize(
    "query, message",
    [
        ("fps=abc", "fps='abc' must be a finite number >= 0"),
        ("fps=inf", "fps='inf' must be a finite number"),
        ("fps=nan", "fps='nan' must be a finite number"),
        ("fps=-2", "fps='-2' must be a finite number >= 0"),
        ("fps=", "fps='' must be"),
        ("size=abc", r"size='abc' must be HEIGHTxWIDTH .* 16\.\.8192"),
        ("size=0x0", r"size='0x0' must be HEIGHTxWIDTH"),
        ("size=64x8", r"size='64x8' must be"),
        ("size=9000x64", r"size='9000x64' must be"),
        ("size=48x64x3", r"size='48x64x3' must be"),
        ("hold=0", "hold='0' must be a whole number >= 1"),
        ("hold=2.5", "hold='2.5' must be a whole number"),
        ("gap=-1", "gap='-1' must be a whole number >= 0"),
        ("foo=1", r"unknown option\(s\) foo; it takes background, fps, gap, hold, loop, size"),
        ("flip-method=2", r"unknown option\(s\) flip_method"),  # a camera's option
    ],
)
def test_bad_folder_options_are_named(folder, query, message):
    with pytest.raises(SourceError, match=message):
        open_source(f"{folder}?{query}")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("csi://0?hold=3", r"CSI camera\): unknown option\(s\) hold"),
        ("csi://0?flip-method=9", "flip_method='9' must be a whole number in 0..7"),
        ("csi://0?framerate=0", "framerate='0' must be"),
        ("v4l2://0?width=8", "width='8' must be a whole number in 16..8192"),
        ("v4l2://0?fps=30", r"V4L2 camera\): unknown option\(s\) fps; it takes height, width"),
    ],
)
def test_bad_camera_options_are_named(uri, message):
    with pytest.raises(SourceError, match=message):
        parse_source_uri(uri)


def test_keyword_options_are_checked_like_uri_options(folder):
    with pytest.raises(SourceError, match="size=.* must be HEIGHTxWIDTH"):
        open_source(str(folder), size="0x0")
    with pytest.raises(SourceError, match="fps=inf must be a finite number"):
        open_source(str(folder), fps=float("inf"))
    with pytest.raises(SourceError, match=r"unknown option\(s\) colour"):
        open_source(str(folder), colour="red")
    src = open_source(f"{folder}?size=48x64", size=(24, 32))  # keywords win, HxW both ways
    assert src.read().image.shape == (24, 32, 3)


@pytest.mark.parametrize("uri", ["file://", "file://?fps=3", "?fps=3"])
def test_a_source_without_a_path_is_an_error_not_the_current_folder(tmp_path, monkeypatch, uri):
    monkeypatch.chdir(tmp_path)
    Image.new("RGB", (32, 24)).save(tmp_path / "here.png")  # would be replayed before
    with pytest.raises(SourceError, match="no path"):
        open_source(uri)


def write_video(path, frames=5, size=(32, 24)):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for v in range(frames):
        writer.write(np.full((size[1], size[0], 3), (0, 0, 50 * v), np.uint8))  # BGR: red rises
    writer.release()
    return path


def test_file_uri_names_a_video_relative_or_absolute(tmp_path, monkeypatch):
    """jetson-inference's form: file://clip.mp4 is relative, file:///path/clip.mp4 absolute."""
    write_video(tmp_path / "clip.avi")
    monkeypatch.chdir(tmp_path)
    spec = parse_source_uri("file://clip.avi")
    assert (spec.kind, spec.target) == ("video", "clip.avi")
    for uri in ("file://clip.avi", f"file://{tmp_path / 'clip.avi'}"):
        src = open_source(uri)
        assert len(list(iter(src.read, None))) == 5
        src.close()
    assert parse_source_uri(f"file://{tmp_path}").kind == "folder"


def test_garbled_video_says_no_frame_could_be_decoded(tmp_path):
    """A video whose header is fine but whose frames are not: an error, not an empty run."""
    data = bytearray(write_video(tmp_path / "good.avi").read_bytes())
    start = data.find(b"\xff\xd8")  # every JPEG frame's payload zeroed, the AVI header kept
    while start >= 0:
        data[start : start + 400] = bytes(len(data[start : start + 400]))
        start = data.find(b"\xff\xd8", start)
    garbled = tmp_path / "garbled.avi"
    garbled.write_bytes(bytes(data))
    src = open_source(str(garbled))
    with pytest.raises(SourceError, match="garbled.avi: could not decode any frame"):
        src.read()
    src.close()
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    with pytest.raises(SourceError, match="noise.mp4: could not decode any frame"):
        open_source(str(noise))


def test_csi_without_gstreamer_says_so():
    import cv2

    if any(
        line.split(":")[0].strip() == "GStreamer" and "YES" in line
        for line in cv2.getBuildInformation().splitlines()
    ):
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match="no GStreamer support") as err:
        open_source("csi://0")
    assert "getBuildInformation" in str(err.value) and "connected" not in str(err.value)


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
    src = open_source(str(folder), hold=3, gap=2, size="30x40", background="#101010")
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
    src = ImageFolderSource(folder, fps=50, hold=10, size_hw=(12, 16))
    t0 = time.perf_counter()
    for _ in range(10):
        src.read()
    assert 0.15 <= time.perf_counter() - t0 < 0.6  # 9 intervals of 20 ms
    time.sleep(0.2)  # a slow model: ~10 frames went by, a camera would not keep them
    frame = src.read()
    assert frame.index >= 15 and src.dropped >= 5


def test_folder_loop_and_errors(folder, tmp_path):
    src = ImageFolderSource(folder, hold=1, loop=2, size_hw=(8, 8))
    assert sum(1 for _ in iter(src.read, None)) == 6
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "empty")
    with pytest.raises(SourceError, match="hold"):
        ImageFolderSource(folder, hold=0)
    with pytest.raises(SourceError, match="whole number"):
        open_source(f"{folder}?hold=many")


def test_video_file_source(tmp_path):
    src = open_source(str(write_video(tmp_path / "clip.avi")))
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


def test_a_folder_replays_at_the_size_its_consumer_asks_for_unless_the_uri_says(folder):
    from wastenet.classes import DEFAULT_INPUT_SIZE

    assert open_source(str(folder)).read().image.shape[:2] == DEFAULT_INPUT_SIZE
    assert open_source(str(folder), frame_hw=(48, 64)).read().image.shape == (48, 64, 3)
    assert open_source(f"{folder}?size=24x32", frame_hw=(48, 64)).read().image.shape == (24, 32, 3)


def test_the_csi_pipeline_scales_to_the_default_input_size():
    from wastenet.classes import DEFAULT_INPUT_SIZE
    from wastenet.runtime.sources import gstreamer_csi_pipeline

    h, w = DEFAULT_INPUT_SIZE
    assert f"width=(int){w}, height=(int){h}" in gstreamer_csi_pipeline(0)
    assert "width=(int)64, height=(int)48" in gstreamer_csi_pipeline(0, width=64, height=48)
