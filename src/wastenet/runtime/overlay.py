"""What the user sees: label, confidence, FPS and door state drawn on the frame.

Shown in an OpenCV window when a display exists, and/or served as an MJPEG stream
on 127.0.0.1 so a phone (through an SSH tunnel or a local proxy) can watch.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np

log = logging.getLogger(__name__)

BOUNDARY = "wastenetframe"
# A stream client that sends no request, or stops reading, for this long is dropped:
# its thread and socket are freed (a phone put to sleep with the page open).
CLIENT_TIMEOUT_S = 10.0


def draw_overlay(
    image_rgb: np.ndarray,
    label: str,
    confidence: float | None,
    fps: float,
    doors_open: list[int],
) -> np.ndarray:
    """A BGR copy of the frame with the bin's state written on it."""
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    scale = max(0.4, w / 640)
    cv2.rectangle(bgr, (0, 0), (w, int(58 * scale)), (0, 0, 0), -1)
    conf = "" if confidence is None else f" {confidence:.0%}"
    cv2.putText(
        bgr,
        f"{label}{conf}",
        (8, int(24 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.8 * scale,
        (255, 255, 255),
        2,
        cv2.LINE_AA,
    )
    doors = ",".join(str(d) for d in sorted(doors_open)) or "closed"
    cv2.putText(
        bgr,
        f"{fps:5.1f} fps  door: {doors}",
        (8, int(50 * scale)),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.6 * scale,
        (0, 255, 255),
        1,
        cv2.LINE_AA,
    )
    return bgr


def display_available() -> bool:
    """True when an OpenCV window could open (a GUI build and an X/Wayland display)."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return "NO" not in [
            line.split(":")[-1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("GUI:")
        ]
    except cv2.error:
        return False


class Window:
    def __init__(self, title: str = "WasteNet") -> None:
        self.title = title

    def show(self, bgr: np.ndarray) -> bool:
        """Show a frame; False once the user pressed q or Esc."""
        cv2.imshow(self.title, bgr)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class MjpegServer:
    """multipart/x-mixed-replace JPEG stream of the latest overlay frame, on 127.0.0.1 only.

    Each client has a thread of its own that sends the newest frame when it is free, so
    a slow client skips frames and never slows the bin; a client silent or not reading
    for ``CLIENT_TIMEOUT_S`` is dropped, and one that goes away mid-frame just ends.
    """

    def __init__(self, port: int = 8080, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            timeout = CLIENT_TIMEOUT_S  # on the socket: a request line, and every write

            def log_message(self, *args) -> None:  # keep the bin's console for decisions
                pass

            def do_GET(self) -> None:
                if self.path not in ("/", "/stream", "/stream.mjpg"):
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seen = -1
                try:
                    while True:
                        jpeg, seen = server.wait_frame(seen)
                        if server.closed:
                            return
                        if jpeg is None:
                            continue
                        self.wfile.write(
                            f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except OSError:  # gone (reset, broken pipe) or not reading (timed out)
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="mjpeg", daemon=True)
        self._thread.start()

    def publish(self, bgr: np.ndarray) -> None:
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg, self._seq = data.tobytes(), self._seq + 1
                self._cond.notify_all()

    def wait_frame(self, seen: int, timeout: float = 5.0) -> tuple[bytes | None, int]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != seen or self._closed, timeout)
            if self._seq == seen:
                return None, seen
            return self._jpeg, self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()
