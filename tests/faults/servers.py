"""Real multipart-JPEG (MJPEG) HTTP servers on 127.0.0.1 that misbehave on purpose, and
stream clients that do."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

MAX_HOLD_S = 20.0  # no server thread outlives a test by more than this


def jpeg_of(colour, size_hw=(48, 64)) -> bytes:
    import cv2

    ok, jpeg = cv2.imencode(".jpg", np.full((*size_hw, 3), colour[::-1], np.uint8))
    return jpeg.tobytes()


def part(body: bytes) -> bytes:
    head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body + b"\r\n"


class _Server:
    """A ThreadingHTTPServer whose GET runs ``self.serve(handler, n)`` for the n-th request."""

    def __init__(self) -> None:
        self.done, self.asked = threading.Event(), threading.Event()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests += 1
                outer.asked.set()
                with contextlib.suppress(OSError):  # the client went away
                    outer.serve(self, outer.requests)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream"

    @staticmethod
    def start_stream(handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()

    def serve(self, handler, n: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.done.set()
        self.server.shutdown()
        self.server.server_close()


class StallingMjpegServer(_Server):
    """The first client gets ``stream_s`` seconds of frames, then the socket held silent;
    every later client (a reconnect) gets no answer at all: a stalled open.
    ``stream_s=None`` answers no one."""

    def __init__(self, colour=(40, 200, 90), stream_s: float | None = 1.5, fps: float = 20.0):
        self.jpeg, self.stream_s, self.fps = jpeg_of(colour), stream_s, fps
        self.stream_end_t = None
        super().__init__()

    def serve(self, handler, n: int) -> None:
        if n == 1 and self.stream_s is not None:
            self.start_stream(handler)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < self.stream_s and not self.done.is_set():
                handler.wfile.write(part(self.jpeg))
                handler.wfile.flush()
                self.stream_end_t = time.perf_counter()
                time.sleep(1 / self.fps)
        self.done.wait(MAX_HOLD_S)  # silent, socket open


class ScriptedMjpegServer(_Server):
    """Connection n follows ``script[n-1]`` (the last entry for every later one):

    ``("drop", k)``: k frames, then half a frame and the connection reset;
    ``("garbage", k)``: k parts of random bytes where JPEGs should be, then close;
    ``("good", None)``: frames until the server closes.
    """

    def __init__(self, script, colour=(40, 200, 90), fps: float = 30.0) -> None:
        self.script, self.jpeg, self.fps = list(script), jpeg_of(colour), fps
        super().__init__()

    def serve(self, handler, n: int) -> None:
        kind, count = self.script[min(n, len(self.script)) - 1]
        self.start_stream(handler)
        rng = np.random.default_rng(n)
        sent = 0
        while not self.done.is_set() and (count is None or sent < count):
            body = rng.bytes(len(self.jpeg)) if kind == "garbage" else self.jpeg
            handler.wfile.write(part(body))
            handler.wfile.flush()
            sent += 1
            time.sleep(1 / self.fps)
        if kind == "drop":
            handler.wfile.write(part(self.jpeg)[: len(self.jpeg) // 2])
            handler.wfile.flush()
            reset(handler.connection)


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0): the way a crashed peer or a dropped link ends."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def stream_client(port: int, request: bool = True, rcvbuf: int | None = None) -> socket.socket:
    """A TCP client of the bin's MJPEG server; ``request=False`` never even asks."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    if request:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: bin\r\n\r\n")
    return sock


class Reader(threading.Thread):
    """A well-behaved stream client: reads everything, counts JPEG parts."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.sock, self.parts, self.bytes = stream_client(port), 0, 0

    def run(self) -> None:
        marker, carry = b"Content-Type: image/jpeg", b""
        try:
            while data := self.sock.recv(65536):
                buf = carry + data
                self.bytes += len(data)
                self.parts += buf.count(marker)
                carry = buf[-(len(marker) - 1) :]
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
