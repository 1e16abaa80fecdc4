"""Live cameras and network streams: one reader thread per capture, reconnection with backoff.

The rule that keeps a stalled stream from crashing the bin: the reader thread is the
only thread that touches its capture. It opens it, reads it and releases it when it
exits. ``close()`` signals it and joins with a timeout; a reader still blocked inside
the driver's ``open()`` or ``read()`` is left to release the capture itself when that
call returns, never under it. ``read()`` returns within a bounded time however the
stream behaves (``LIVE``), and within ``POLL_S`` of a stop event (SIGINT/SIGTERM), so
the main thread never waits on a network call it cannot interrupt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from wastenet.errors import SourceError

if TYPE_CHECKING:
    from wastenet.runtime.sources import Frame, FrameSource

log = logging.getLogger(__name__)

POLL_S = 0.1  # how often a waiting read() looks at the stop event
JOIN_S = 0.5  # how long close() waits for a reader to finish before leaving it the capture
# Seconds a live source may take to open, and may go without a frame once open, before
# read() gives up on it (the reconnect policy then takes over). Tests shorten them.
LIVE = {"open_timeout_s": 10.0, "stall_s": 5.0}
RECONNECT = {"max_failures": 5, "backoff_s": 0.5, "max_backoff_s": 8.0}


def open_stream_capture(url: str, open_timeout_s: float, read_timeout_s: float):
    """A cv2.VideoCapture of a network stream whose open and reads time out in the driver.

    OpenCV's FFmpeg backend waits 30 s by default; ``CAP_PROP_OPEN_TIMEOUT_MSEC`` and
    ``CAP_PROP_READ_TIMEOUT_MSEC`` bound it. A backend that refuses these properties
    refuses the open at once: then the stream is opened without them.
    """
    import cv2

    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(read_timeout_s * 1000),
    ]
    t0 = time.monotonic()
    cap = cv2.VideoCapture(url, cv2.CAP_ANY, params)
    if cap.isOpened() or time.monotonic() - t0 > open_timeout_s / 2:
        return cap
    cap.release()
    return cv2.VideoCapture(url)


class LatestFrameBuffer:
    """Holds only the newest frame: a producer overwrites, a consumer takes each frame once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._fresh = False
        self._closed = False
        self.dropped = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self._fresh:
                self.dropped += 1
            self._frame, self._fresh = frame, True
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not yet taken; None on timeout or after close()."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._fresh or self._closed, timeout):
                return None
            if not self._fresh:
                return None
            self._fresh = False
            return self._frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class LatestFrameSource:
    """A reader thread pulls from a source continuously; ``read()`` returns only the latest frame.

    For cameras and network streams: a slow model then never works on frames that
    queued up while it was busy. ``inner`` is an open FrameSource, or a function that
    opens one, which then runs in the reader thread too (an open can stall for as
    long as a read). The reader owns ``inner`` and closes it when it exits.
    ``read()`` returns None when the source ended or failed (``error`` says why),
    when no frame came for ``timeout_s`` (``open_timeout_s`` while opening), or
    when ``stop`` is set.
    """

    def __init__(
        self,
        inner: FrameSource | Callable[[], FrameSource],
        timeout_s: float | None = None,
        *,
        open_timeout_s: float | None = None,
        stop: threading.Event | None = None,
        name: str = "camera",
    ) -> None:
        self.timeout_s = LIVE["stall_s"] if timeout_s is None else float(timeout_s)
        self.open_timeout_s = (
            LIVE["open_timeout_s"] if open_timeout_s is None else float(open_timeout_s)
        )
        self.name, self.stop = name, stop or threading.Event()
        self.error: str | None = None
        self.buffer = LatestFrameBuffer()
        opener = inner if callable(inner) and not hasattr(inner, "read") else None
        self.inner: FrameSource | None = None if opener else inner  # type: ignore[assignment]
        self._opened = threading.Event()
        if opener is None:
            self._opened.set()
        self._closing = threading.Event()
        self._last = time.monotonic()  # start, open, or the last frame taken
        self._thread = threading.Thread(
            target=self._pump, args=(opener,), name="frame-reader", daemon=True
        )
        self._thread.start()

    def _pump(self, opener: Callable[[], FrameSource] | None) -> None:
        inner = self.inner
        try:
            if inner is None:
                inner = self.inner = opener()  # type: ignore[misc]
                self._last = time.monotonic()
                self._opened.set()
            while not self._closing.is_set():
                frame = inner.read()
                if frame is None:
                    self.error = self.error or f"{self.name}: the stream ended"
                    break
                self.buffer.put(frame)
        except Exception as exc:  # a dying camera must not kill the process silently
            self.error = str(exc) if isinstance(exc, SourceError) else f"{self.name}: {exc}"
            log.debug("frame reader stopped: %s", exc)
        finally:
            self.buffer.close()
            if inner is not None:  # released here, by the only thread that reads it
                try:
                    inner.close()
                except Exception as exc:
                    log.warning("%s: closing the capture failed: %s", self.name, exc)

    def read(self) -> Frame | None:
        while not self.stop.is_set():
            frame = self.buffer.get(POLL_S)
            if frame is not None:
                self._last = time.monotonic()
                return frame
            if self.buffer.closed:
                return None
            opened = self._opened.is_set()
            budget = self.timeout_s if opened else self.open_timeout_s
            if time.monotonic() - self._last > budget:
                doing = "no frame" if opened else "no answer while opening"
                self.error = f"{self.name}: {doing} for {budget:g} s"
                return None
        return None

    @property
    def running(self) -> bool:
        """Whether the reader thread is still alive (it may be blocked in the driver)."""
        return self._thread.is_alive()

    def close(self) -> None:
        self._closing.set()
        self.buffer.close()
        self._thread.join(JOIN_S)
        if self._thread.is_alive():
            log.info(
                "%s: the reader is still inside the driver; it releases the capture "
                "when that call returns",
                self.name,
            )


class ReconnectingSource:
    """Retries a camera that stops delivering, with exponential backoff, then gives up.

    The first open is retried too (a bin may boot before its camera). Giving up sets
    ``lost`` (the reason) and ends the source: the bin exits with
    ``ExitCode.SOURCE_LOST``. A set ``stop`` ends it at once, and is not a loss.
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        name: str,
        max_failures: int | None = None,
        backoff_s: float | None = None,
        max_backoff_s: float | None = None,
        on_report: Callable[[str], None] | None = None,
        sleep: Callable[[float], object] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.factory, self.name = factory, name
        self.max_failures = RECONNECT["max_failures"] if max_failures is None else max_failures
        self.backoff_s = RECONNECT["backoff_s"] if backoff_s is None else backoff_s
        self.max_backoff_s = RECONNECT["max_backoff_s"] if max_backoff_s is None else max_backoff_s
        self.report = on_report or (lambda msg: log.warning("%s", msg))
        self.stop = stop or threading.Event()
        self.sleep = sleep or self._wait  # a backoff wait ends at once on stop
        self.failures_total = 0
        self.lost: str | None = None
        self.inner: FrameSource | None = None
        self._open()

    def read(self) -> Frame | None:
        attempt = 0
        while not self.stop.is_set():
            frame = self._read_inner()
            if frame is not None:
                return frame
            if self.stop.is_set():
                break
            attempt += 1
            self.failures_total += 1
            if attempt > self.max_failures:
                self.lost = f"{self.name}: gave up after {self.max_failures} reconnect attempts"
                self.report(self.lost)
                return None
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
            self.report(
                f"{self.name}: no frame; reconnecting in {delay:.1f} s ({attempt}/{self.max_failures})"
            )
            self.sleep(delay)
            if not self.stop.is_set():
                self._close_inner()
                self._open()
        return None

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds`` or until stop, whichever is first.

        Short sleeps and ``is_set()``, never ``stop.wait()``: the main thread must not
        hold the event's lock, which the SIGINT handler's ``stop.set()`` takes.
        """
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(POLL_S, left))

    def _read_inner(self) -> Frame | None:
        if self.inner is None:
            return None
        try:
            frame = self.inner.read()
        except Exception as exc:  # driver errors look different on every platform
            self.report(f"{self.name}: read failed ({exc})")
            return None
        if frame is None and getattr(self.inner, "error", None) and not self.stop.is_set():
            self.report(self.inner.error)  # type: ignore[union-attr]
        return frame

    def _open(self) -> None:
        try:
            self.inner = self.factory()
        except SourceError as exc:
            self.report(str(exc))
            self.inner = None

    def _close_inner(self) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def close(self) -> None:
        self._close_inner()
