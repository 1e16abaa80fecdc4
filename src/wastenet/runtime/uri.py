"""Source URIs: which source a URI names, and its query options checked one by one.

``parse_source_uri`` classifies ``csi://N``, ``v4l2://N``, ``/dev/videoN``, network
streams (``rtsp://``, ``http://``...), ``file://PATH`` (jetson-inference's form:
``file://clip.mp4`` is relative, ``file:///data/clip.mp4`` absolute), video files and
image folders. Each kind accepts only the options it uses (``SOURCE_OPTIONS``), each
converted and range-checked, so a typo or a nonsense value is a ``SourceError``
naming the option, never a traceback later or a setting silently ignored.
The value rules (``real``, ``whole``...) are shared with the actuator URIs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from wastenet.errors import SourceError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
MIN_SIDE, MAX_SIDE = 16, 8192  # frame width/height limits, pixels

# A rule converts one option value (URI text or a Python value) or raises ValueError
# whose message completes "KEY=VALUE must be ...".
Rule = Callable[[object], object]


def real(lo: float, *, above: bool = False, note: str = "") -> Rule:
    """A finite number >= lo (> lo when ``above``)."""
    wanted = f"a finite number {'>' if above else '>='} {lo:g}{note}"

    def convert(value: object) -> float:
        try:
            x = float(value) if not isinstance(value, bool) else math.nan
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x) or x < lo or (above and x == lo):
            raise ValueError(wanted)
        return x

    return convert


def whole(lo: int, hi: int | None = None) -> Rule:
    """A whole number in lo..hi (no upper bound when ``hi`` is None)."""
    wanted = f"a whole number >= {lo}" if hi is None else f"a whole number in {lo}..{hi}"

    def convert(value: object) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(wanted)
        try:
            n = int(value) if isinstance(value, int | float) else int(str(value).strip(), 10)
        except ValueError:
            raise ValueError(wanted) from None
        if n < lo or (hi is not None and n > hi):
            raise ValueError(wanted)
        return n

    return convert


def text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a non-empty text")
    return value.strip()


side = whole(MIN_SIDE, MAX_SIDE)


def frame_size(value: object) -> tuple[int, int]:
    """``HxW`` text (as ``size=288x384``, the order of every size in WasteNet) or a
    (height, width) pair; each side 16..8192."""
    wanted = f"HEIGHTxWIDTH with each side a whole number in {MIN_SIDE}..{MAX_SIDE}"
    pieces = value.lower().split("x") if isinstance(value, str) else value
    try:
        height, width = (side(v) for v in pieces)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(wanted) from None
    return height, width


SOURCE_OPTIONS: dict[str, dict[str, Rule]] = {
    "folder": {
        "fps": real(0, note=" (frames per second; 0 replays as fast as frames are read)"),
        "hold": whole(1),
        "gap": whole(0),
        "loop": whole(0),
        "size": frame_size,
        "background": text,
    },
    "video": {},
    "csi": {"width": side, "height": side, "framerate": whole(1, 1000), "flip_method": whole(0, 7)},
    "v4l2": {"width": side, "height": side},
    "rtsp": {},  # a stream URL's query belongs to the server
}
KIND_NAMES = {
    "folder": "image folder",
    "video": "video file",
    "csi": "CSI camera",
    "v4l2": "V4L2 camera",
    "rtsp": "network stream",
}


def check_options(options: dict, rules: dict[str, Rule], where: str, error=SourceError) -> dict:
    """Options converted by their rules; an unknown key or a bad value raises ``error``."""
    named = {str(k).replace("-", "_"): v for k, v in options.items()}
    unknown = sorted(set(named) - set(rules))
    if unknown:
        takes = ", ".join(sorted(rules)) or "no options"
        raise error(f"{where}: unknown option(s) {', '.join(unknown)}; it takes {takes}")
    checked = {}
    for key, value in named.items():
        try:
            checked[key] = rules[key](value)
        except ValueError as exc:
            raise error(f"{where}: option {key}={value!r} must be {exc}") from None
    return checked


def check_source_options(kind: str, options: dict, where: str) -> dict:
    return check_options(options, SOURCE_OPTIONS[kind], f"{where} ({KIND_NAMES[kind]})")


@dataclass
class SourceSpec:
    kind: str  # csi | v4l2 | rtsp | video | folder
    target: str  # sensor id, device index, URL or path
    options: dict  # checked and converted (SOURCE_OPTIONS)


def parse_source_uri(uri: str) -> SourceSpec:
    """Classify a source URI; its query parameters (``?fps=20&hold=10``) become checked options."""
    if not uri:
        raise SourceError(
            "empty source URI; try csi://0, /dev/video0, rtsp://host/path or a folder"
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in NETWORK_SCHEMES:
        return SourceSpec("rtsp", uri.split("#")[0], {})
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "csi":
        sensor = parts.netloc or parts.path.strip("/") or "0"
        if not sensor.isdigit():
            raise SourceError(f"{uri}: the CSI sensor id must be a number, as in csi://0")
        kind, target = "csi", sensor
    elif scheme == "v4l2":
        dev = (parts.netloc or parts.path.strip("/")).removeprefix("dev/video")
        if not dev.isdigit():
            raise SourceError(f"{uri}: expected v4l2://N with a device number N")
        kind, target = "v4l2", dev
    elif scheme in ("", "file"):
        # file://clip.mp4 puts the name in the netloc: the path is netloc + path
        path_text = unquote(parts.netloc + parts.path) if scheme == "file" else uri.split("?")[0]
        kind, target = _classify_path(uri, path_text)
    else:
        raise SourceError(
            f"{uri}: unknown source scheme {scheme!r}; use csi://N, v4l2://N, /dev/videoN, "
            "rtsp://..., a video file or an image folder"
        )
    return SourceSpec(kind, target, check_source_options(kind, query, uri))


def _classify_path(uri: str, path_text: str) -> tuple[str, str]:
    if not path_text:
        raise SourceError(
            f"{uri}: no path; name a video file or an image folder "
            "(file://clip.mp4, file:///data/scene or just scene/)"
        )
    if path_text.startswith("/dev/video"):
        dev = path_text.removeprefix("/dev/video")
        if not dev.isdigit():
            raise SourceError(f"{uri}: expected /dev/videoN")
        return "v4l2", dev
    path = Path(path_text).expanduser()
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder to read frames from")
    if path.is_dir():
        return "folder", str(path)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video", str(path)
    if suffix in IMAGE_SUFFIXES:
        return "folder", str(path)
    raise SourceError(f"{path}: not a video ({', '.join(sorted(VIDEO_SUFFIXES))}) or image")
