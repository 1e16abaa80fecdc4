"""Reading images the same way everywhere: RGB uint8, EXIF orientation applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from wastenet.errors import WasteNetError


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file into RGB uint8 HWC, honouring EXIF rotation.

    Grayscale, palette, CMYK and alpha images are converted (alpha composited on white).
    """
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError as exc:
        raise WasteNetError(f"{path}: no such image file") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise WasteNetError(f"{path}: cannot decode image ({exc})") from exc
