"""Frame sources chosen by one URI (DESIGN.md pattern 1, after jetson-inference's videoSource).

``open_source(uri)`` turns ``csi://0``, ``/dev/video0``, ``v4l2://0``, ``rtsp://...``,
``clip.mp4`` (or ``file://clip.mp4``) or an image folder (URI parsing and option
checks: ``wastenet.runtime.uri``) into a ``FrameSource`` whose ``read()`` returns the
next ``Frame`` (RGB uint8, capture timestamp, index) or ``None`` at the end.
Cameras and streams are read by their own thread (``live.LatestFrameSource``: it alone
opens, reads and releases the capture, and ``read()`` returns within a bounded time)
inside ``live.ReconnectingSource``: a camera that disappears is retried with
exponential backoff and reported, and after N failures the run ends as "source lost".
Image folders decode one image at a time, skipping an undecodable one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from wastenet.classes import DEFAULT_INPUT_SIZE
from wastenet.errors import SourceError, WasteNetError
from wastenet.runtime.live import (  # noqa: F401  (public here too)
    LIVE,
    RECONNECT,
    LatestFrameBuffer,
    LatestFrameSource,
    ReconnectingSource,
    open_stream_capture,
)
from wastenet.runtime.uri import (  # noqa: F401  (SourceSpec, parse_source_uri: public here too)
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    SourceSpec,
    check_source_options,
    parse_source_uri,
)

log = logging.getLogger(__name__)


@dataclass
class Frame:
    image: np.ndarray  # RGB uint8 HWC
    t_capture: float  # time.perf_counter() when the frame was captured
    index: int


class FrameSource(Protocol):
    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


def gstreamer_csi_pipeline(
    sensor_id: int = 0,
    width: int = DEFAULT_INPUT_SIZE[1],
    height: int = DEFAULT_INPUT_SIZE[0],
    framerate: int = 30,
    flip_method: int = 0,
    capture_width: int = 1280,
    capture_height: int = 720,
) -> str:
    """The nvarguscamerasrc pipeline for a Jetson CSI camera (the paper's capture path).

    The sensor captures at a native mode and nvvidconv scales to the output size;
    ``appsink drop=1 max-buffers=1`` keeps only the newest frame so a slow model
    never works on a stale one.
    """
    if not 0 <= int(flip_method) <= 7:
        raise SourceError(f"flip-method must be 0..7, got {flip_method}")
    for name, value in (("width", width), ("height", height), ("framerate", framerate)):
        if int(value) <= 0:
            raise SourceError(f"CSI camera {name} must be positive, got {value}")
    return (
        f"nvarguscamerasrc sensor-id={int(sensor_id)} ! "
        f"video/x-raw(memory:NVMM), width=(int){int(capture_width)}, "
        f"height=(int){int(capture_height)}, framerate=(fraction){int(framerate)}/1 ! "
        f"nvvidconv flip-method={int(flip_method)} ! "
        f"video/x-raw, width=(int){int(width)}, height=(int){int(height)}, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! "
        "appsink drop=1 max-buffers=1"
    )


# ---------------------------------------------------------------- image folders


def _parse_colour(text: str) -> tuple[int, int, int]:
    text = str(text).strip().lstrip("#")
    try:
        if len(text) == 6:
            return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
        values = [int(v) for v in text.split(",")]
        if len(values) == 3 and all(0 <= v <= 255 for v in values):
            return tuple(values)  # type: ignore[return-value]
    except ValueError:
        pass
    raise SourceError(f"background colour {text!r}: use #rrggbb or r,g,b")


class ImageFolderSource:
    """Replays images as a camera would: each held ``hold`` frames, ``gap`` empty frames before it.

    ``fps > 0`` paces frames in real time and, like a live camera, skips frames the
    reader was too slow to take; ``fps = 0`` yields every frame as fast as asked.
    An empty frame is the ``background`` image or a plain colour. ``loop`` replays
    the scene that many times (0 = forever). Images are decoded when first shown and
    only the last ``CACHED_IMAGES`` kept, so a folder of any size starts at once in
    flat memory; an image that cannot be decoded is skipped with one warning (empty
    frames take its turn) and only a folder with no decodable image stops the run.
    """

    CACHED_IMAGES = 4

    def __init__(
        self,
        path: str | Path,
        fps: float = 0.0,
        hold: int = 1,
        gap: int = 0,
        background: str | None = None,
        size_hw: tuple[int, int] = DEFAULT_INPUT_SIZE,
        loop: int = 1,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        from wastenet.imageio import read_rgb
        from wastenet.preprocess import fit_image

        path = Path(path)
        files = (  # regular files only: opening a FIFO named x.jpg would block the bin for good
            [path]
            if path.is_file()
            else sorted(
                p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
        )
        if not files:
            raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
        if int(hold) < 1 or int(gap) < 0 or float(fps) < 0 or int(loop) < 0:
            raise SourceError("image folder source: need hold >= 1, gap >= 0, fps >= 0, loop >= 0")
        h, w = (int(v) for v in size_hw)
        self.files, self.size_hw = files, (h, w)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()  # item -> decoded image
        self.skipped: set[int] = set()  # items that could not be decoded
        if background and Path(background).is_file():
            self.empty = fit_image(read_rgb(background), (h, w))
        else:
            colour = _parse_colour(background) if background else (235, 235, 232)
            self.empty = np.full((h, w, 3), colour, dtype=np.uint8)
        self.hold, self.gap, self.fps, self.loop = int(hold), int(gap), float(fps), int(loop)
        self.per_scene = len(self.files) * (self.hold + self.gap)
        self.total = None if self.loop == 0 else self.per_scene * self.loop
        self._clock = clock
        self._next = 0
        self._t0: float | None = None
        self.dropped = 0

    def item_at(self, index: int) -> int | None:
        """Which image frame ``index`` shows (None for an empty frame): the replay's ground truth."""
        k = index % self.per_scene
        item, offset = divmod(k, self.hold + self.gap)
        return None if offset < self.gap or item in self.skipped else item

    def _image(self, item: int) -> np.ndarray:
        """Item ``item`` decoded and fitted, from a small cache; the empty frame if undecodable."""
        from wastenet.imageio import read_rgb
        from wastenet.preprocess import fit_image

        if item in self._cache:
            self._cache.move_to_end(item)
            return self._cache[item]
        if item in self.skipped:
            return self.empty
        try:
            image = fit_image(read_rgb(self.files[item]), self.size_hw)
        except WasteNetError as exc:
            self.skipped.add(item)
            if len(self.skipped) == len(self.files):
                raise SourceError(
                    f"none of the {len(self.files)} images could be decoded (last: {exc})"
                ) from exc
            log.warning("%s: skipped (empty frames take its turn)", exc)
            return self.empty
        self._cache[item] = image
        while len(self._cache) > self.CACHED_IMAGES:
            self._cache.popitem(last=False)
        return image

    def read(self) -> Frame | None:
        index = self._next
        if self.fps > 0:
            now = self._clock()
            if self._t0 is None:
                self._t0 = now
            due = int((now - self._t0) * self.fps)
            if due > index:  # the reader was slow: a live camera would have moved on
                self.dropped += due - index
                index = due
            else:
                wait = self._t0 + index / self.fps - now
                if wait > 0:
                    time.sleep(wait)
        if self.total is not None and index >= self.total:
            return None
        self._next = index + 1
        item = self.item_at(index)
        image = self.empty if item is None else self._image(item)
        return Frame(image, self._clock(), index)

    def close(self) -> None:
        self._cache.clear()


# ---------------------------------------------------------------- OpenCV captures


class CaptureSource:
    """A cv2.VideoCapture (V4L2 camera, GStreamer pipeline, video file, stream)."""

    def __init__(self, open_capture: Callable[[], object], name: str) -> None:
        self.name = name
        self._open_capture = open_capture
        self._cap = None
        self._index = 0
        self.reopen()

    open_hint = "cannot open (is it connected and free?)"

    def reopen(self) -> None:
        self.close()
        cap = self._open_capture()
        if cap is None or not cap.isOpened():
            raise SourceError(f"{self.name}: {self.open_hint}")
        self._cap = cap

    def read(self) -> Frame | None:
        import cv2

        if self._cap is None:
            return None
        ok, bgr = self._cap.read()
        t = time.perf_counter()
        if not ok or bgr is None:
            return None
        self._index += 1
        return Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), t, self._index - 1)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class VideoFileSource(CaptureSource):
    """A video file: one that yields no frame at all is damaged, not finished."""

    open_hint = (
        "could not decode any frame: not a video this OpenCV can read "
        "(damaged or truncated file, or a codec its FFmpeg lacks)"
    )

    def __init__(self, path: str) -> None:
        import cv2

        super().__init__(lambda: cv2.VideoCapture(path), path)

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is None and self._index == 0 and self._cap is not None:
            raise SourceError(
                f"{self.name}: could not decode any frame (damaged or truncated file, "
                "or a codec this OpenCV's FFmpeg lacks)"
            )
        return frame


def require_gstreamer(uri: str) -> None:
    """csi:// needs an OpenCV built with GStreamer (JetPack's has it, pip's wheel has not)."""
    import cv2

    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "GStreamer" and value.strip().upper().startswith("YES"):
            return
    raise SourceError(
        f"{uri}: this OpenCV ({cv2.__version__}) has no GStreamer support, which the CSI "
        "camera pipeline needs (cv2.getBuildInformation() does not say 'GStreamer: YES'); "
        "on a Jetson use JetPack's OpenCV (python3-opencv) rather than the opencv-python wheel"
    )


RETRY_OPTIONS = ("max_failures", "backoff_s", "on_report")


def open_source(
    uri: str,
    stop: threading.Event | None = None,
    frame_hw: tuple[int, int] | None = None,
    **opts,
) -> FrameSource:
    """Open a frame source by URI; keyword options override the URI's query parameters.

    ``frame_hw`` is the frame size the consumer wants, (height, width): the model card's
    input size for the bin. A folder replays at it and a CSI camera scales to it unless
    the URI says otherwise (``?size=HxW``, ``?width=&height=``); a USB camera or a stream
    keeps its own mode, and preprocessing fits whatever arrives.

    Options are checked as URI options are (``uri.SOURCE_OPTIONS``); ``max_failures``,
    ``backoff_s`` and ``on_report`` tune a camera's reconnection (defaults:
    ``live.RECONNECT``). ``stop`` (the bin's SIGINT/SIGTERM event) ends a camera's
    waits (opening, a stalled stream, a reconnect backoff) within ``live.POLL_S``.
    """
    spec = parse_source_uri(str(uri))
    given = {k.replace("-", "_"): v for k, v in opts.items() if v is not None}
    retry = {k: given.pop(k) for k in RETRY_OPTIONS if k in given}
    o = {**spec.options, **check_source_options(spec.kind, given, str(uri))}
    h, w = frame_hw or DEFAULT_INPUT_SIZE
    if spec.kind == "folder":
        return ImageFolderSource(
            spec.target,
            fps=o.get("fps", 0.0),
            hold=o.get("hold", 1),
            gap=o.get("gap", 0),
            background=o.get("background"),
            size_hw=o.get("size", (h, w)),
            loop=o.get("loop", 1),
        )
    if spec.kind == "video":
        return VideoFileSource(spec.target)
    if spec.kind == "csi":
        o = {"width": w, "height": h, **o}
    name, open_capture = _camera(spec, o, str(uri))
    stop = stop or threading.Event()

    def factory() -> FrameSource:  # opened, read and released by the reader thread
        return LatestFrameSource(lambda: CaptureSource(open_capture, name), name=name, stop=stop)

    return ReconnectingSource(factory, name, stop=stop, **retry)


def _camera(spec: SourceSpec, o: dict, uri: str) -> tuple[str, Callable[[], object]]:
    """A live source's name and the function that opens its cv2.VideoCapture."""
    import cv2

    if spec.kind == "csi":
        require_gstreamer(uri)
        pipeline = gstreamer_csi_pipeline(
            int(spec.target),
            width=o["width"],
            height=o["height"],
            framerate=o.get("framerate", 30),
            flip_method=o.get("flip_method", 0),
        )
        return f"CSI camera {spec.target}", lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if spec.kind == "v4l2":
        dev = int(spec.target)
        name = f"/dev/video{dev}"
        if not Path(name).exists():
            raise SourceError(f"{name}: no such camera device")

        def open_v4l2():
            cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
            for prop, key in (
                (cv2.CAP_PROP_FRAME_WIDTH, "width"),
                (cv2.CAP_PROP_FRAME_HEIGHT, "height"),
            ):
                if key in o:
                    cap.set(prop, o[key])
            return cap

        return name, open_v4l2

    def open_stream():  # rtsp and other network streams: the driver's waits time out too
        return open_stream_capture(spec.target, LIVE["open_timeout_s"], LIVE["stall_s"])

    return _without_password(spec.target), open_stream


def _without_password(url: str) -> str:
    """The stream URL as reports print it: a password in it replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
