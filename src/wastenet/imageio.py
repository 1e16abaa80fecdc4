"""Reading images the same way everywhere: RGB uint8, EXIF orientation applied.

A file's width and height come from its header (``Image.open`` reads nothing more) and
are checked against ``MAX_PIXELS`` before anything is decoded: a few hundred kilobytes
of PNG can declare 13000 x 13000 pixels and cost gigabytes to decode.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from wastenet.errors import WasteNetError

MAX_PIXELS = 50_000_000  # the pixel budget of one image (50 megapixels), checked explicitly


def too_large(size_wh: tuple[int, int]) -> str:
    """The rejection reason when width x height is over the pixel budget, else ''."""
    width, height = size_wh
    if width * height <= MAX_PIXELS:
        return ""
    return f"too large: {width} x {height} pixels over the budget of {MAX_PIXELS}"


def bomb_reason(exc: Image.DecompressionBombError) -> str:
    """PIL refused to open a header far over its own limit (above ours): the same reason."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = found.group(1) if found else "more than the"
    return f"too large: {pixels} pixels over the budget of {MAX_PIXELS}"


def open_checked(source) -> Image.Image:
    """``Image.open`` (header only) plus the pixel budget; raises WasteNetError when over it.

    PIL's own DecompressionBombWarning is silenced here: the explicit check replaces it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(source)
        except Image.DecompressionBombError as exc:
            raise WasteNetError(bomb_reason(exc)) from exc
    reason = too_large(img.size)
    if reason:
        img.close()
        raise WasteNetError(reason)
    return img


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into RGB uint8 HWC, honouring EXIF rotation.

    Grayscale, palette, CMYK and alpha images are converted (alpha composited on white).
    An image over ``MAX_PIXELS`` raises WasteNetError without being decoded.
    """
    try:
        with open_checked(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise WasteNetError(f"{path}: no such image file") from exc
    except WasteNetError as exc:
        raise WasteNetError(f"{path}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise WasteNetError(f"{path}: cannot decode image ({exc})") from exc
