"""A grid of augmented samples (the paper's figure 11), tiled with OpenCV."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from wastenet.classes import DEFAULT_INPUT_SIZE
from wastenet.data.augment import Augmenter
from wastenet.data.augment import preset as make_preset
from wastenet.errors import WasteNetError
from wastenet.imageio import read_rgb
from wastenet.preprocess import fit_image

_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def _sample_paths(source: Path, n: int, rng: np.random.Generator) -> list[str]:
    if (
        source.is_file()
        and source.suffix == ".json"
        or source.is_dir()
        and (source / "manifest.json").is_file()
    ):
        from wastenet.data.manifest import load_manifest

        paths = [it.path for it in load_manifest(source).items(split="train")]
    elif source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in _SUFFIXES)
    else:
        raise WasteNetError(f"{source}: not a manifest.json or an image folder")
    if not paths:
        raise WasteNetError(f"{source}: no images to preview")
    picks = rng.choice(len(paths), size=min(n, len(paths)), replace=False)
    return [paths[i] for i in sorted(picks)]


def mask_view(img: np.ndarray) -> np.ndarray:
    """The object over green where a clean mask exists, else the photo dimmed to a third."""
    from wastenet.data.background import object_alpha

    alpha = object_alpha(img)
    if alpha is None:
        return img // 3
    green = np.zeros_like(img)
    green[..., 1] = 170
    a = alpha[..., None]
    return (img * a + green * (1 - a)).astype(np.uint8)


def tile(images: list[np.ndarray], cols: int | None = None, pad: int = 4) -> np.ndarray:
    """Equal-size HWC images into one grid with a white gutter."""
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    h, w = images[0].shape[:2]
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


def preview(
    source: str | Path,
    out: str | Path,
    preset: str = "table3",
    zoom: float | None = None,
    n: int = 16,
    size_hw: tuple[int, int] = DEFAULT_INPUT_SIZE,
    seed: int = 0,
    masks: bool = False,
) -> Path:
    """Write a PNG grid of ``n`` augmented samples (or, with ``masks``, of the objects the
    background swap would cut out, over green; dimmed where no clean mask exists)."""
    out = check_out_image(Path(out))
    rng = np.random.default_rng(seed)
    augmenter = Augmenter(make_preset(preset, zoom))
    if n < 1:
        raise WasteNetError("--n must be at least 1")
    paths = _sample_paths(Path(source), n, rng)
    if masks:
        images = [mask_view(fit_image(read_rgb(p), size_hw)) for p in paths]
    else:
        images = [augmenter(fit_image(read_rgb(p), size_hw), rng) for p in paths]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        written = cv2.imwrite(str(out), tile(images)[:, :, ::-1])
    except (OSError, cv2.error) as exc:
        raise WasteNetError(f"{out}: cannot write the preview image ({exc})") from exc
    if not written:
        raise WasteNetError(f"{out}: cannot write the preview image")
    return out


def check_out_image(out: Path) -> Path:
    """``--out`` must be an image file path (grid.png), not a folder: checked up front."""
    if out.is_dir():
        raise WasteNetError(f"--out {out}: is a folder; give an image file path such as grid.png")
    if out.suffix.lower() not in _SUFFIXES:
        raise WasteNetError(
            f"--out {out}: must be an image file path ending "
            f"{', '.join(sorted(_SUFFIXES))} (e.g. grid.png)"
        )
    return out
