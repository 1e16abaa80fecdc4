"""Background swap and "small in frame" for studio photos like TrashNet's.

TrashNet objects sit on a plain bright backdrop; a bin camera sees wood, floors, bin
interiors and clutter, and objects that fill only part of the frame. ``object_alpha``
finds the backdrop by a gradient-tolerant flood fill from the border, and the object is
pasted over a real background image or a procedural texture. ``wastenet data preview
--masks`` shows the masks over green to check them by eye.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from wastenet.errors import WasteNetError

TEXTURES = ("wood", "floor", "noise", "gradient", "bin")
MIN_OBJECT, MAX_OBJECT = 0.04, 0.85  # share of the frame the object must cover
BACKDROP_MAX_SAT, BACKDROP_MIN_VALUE = 45, 140  # HSV: a bright, nearly grey backdrop
MIN_BACKDROP_BORDER = 0.45  # share of the border that must look like backdrop
MIN_SOLIDITY = 0.6  # object area / convex hull area: below it the mask is in fragments
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def object_alpha(img: np.ndarray, step: int = 3) -> np.ndarray | None:
    """Float32 HxW alpha (1 = object), or None when no clean mask can be had.

    The backdrop is what a flood fill reaches from the border pixels that look like a
    studio backdrop (bright, nearly grey), each step allowed ``step`` levels of change,
    so the gradients and shadows of a real white board are followed. Objects may run off
    the frame (a partial view). None when less than 45 % of the border is backdrop (the
    object fills the frame, as TrashNet's cardboard often does), when the object is
    under 4 % or over 85 % of the frame, or when it comes out in fragments (white paper
    or clear plastic on white: solidity under 0.6, or a largest part under 70 %).
    """
    h, w = img.shape[:2]
    small_w = 128
    small_h = max(8, round(h * small_w / w))
    small = cv2.resize(img, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (3, 3), 0)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    backdrop_like = (hsv[:, :, 1] < BACKDROP_MAX_SAT) & (hsv[:, :, 2] > BACKDROP_MIN_VALUE)
    border = np.zeros((small_h, small_w), bool)
    border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
    seeds = border & backdrop_like
    if seeds.sum() < MIN_BACKDROP_BORDER * border.sum():
        return None
    reached = np.zeros((small_h + 2, small_w + 2), np.uint8)
    flags = 4 | cv2.FLOODFILL_MASK_ONLY | (1 << 8)
    for y, x in zip(*np.nonzero(seeds), strict=True):
        if not reached[y + 1, x + 1]:
            cv2.floodFill(small, reached, (int(x), int(y)), 0, (step,) * 3, (step,) * 3, flags)
    obj = (reached[1:-1, 1:-1] == 0).astype(np.uint8)
    obj = cv2.morphologyEx(obj, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    obj = cv2.morphologyEx(obj, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(obj, connectivity=8)
    if n <= 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.isin(labels, 1 + np.nonzero(areas >= 0.1 * areas.max())[0]).astype(np.uint8)
    area = int(keep.sum())
    hull = cv2.contourArea(cv2.convexHull(cv2.findNonZero(keep)))
    if area / max(1.0, hull) < MIN_SOLIDITY or areas.max() < 0.7 * area:
        return None
    if not MIN_OBJECT < keep.mean() < MAX_OBJECT:
        return None
    alpha = cv2.resize(keep.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.004 * w))


def texture(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural background: wood grain, floor tiles, noise, gradient, bin interior."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 220, 3).astype(np.float32)
    if kind == "wood":
        base = np.array([rng.uniform(120, 200), rng.uniform(80, 130), rng.uniform(40, 80)])
        freq = rng.uniform(0.05, 0.15)
        warp = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 15) * 40
        grain = 0.5 + 0.5 * np.sin((yy + warp) * freq)
        out = base[None, None] * (0.7 + 0.3 * grain[:, :, None])
    elif kind == "floor":
        tile = int(rng.integers(24, 80))
        checker = ((yy // tile + xx // tile) % 2)[:, :, None]
        other = rng.uniform(40, 220, 3)
        out = checker * base + (1 - checker) * other
        grout = ((yy % tile < 2) | (xx % tile < 2))[:, :, None]
        out = np.where(grout, 60.0, out)
    elif kind == "noise":
        coarse = rng.uniform(0, 255, (max(2, h // 16), max(2, w // 16), 3)).astype(np.float32)
        out = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == "gradient":
        other = rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(-1, 1) / w + yy * rng.uniform(-1, 1) / h)[:, :, None]
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        out = base * (1 - t) + other * t
    elif kind == "bin":
        colour = [(40, 40, 45), (30, 70, 40), (30, 45, 90), (70, 70, 70)][int(rng.integers(4))]
        r = np.hypot((xx - w / 2) / w, (yy - h / 2) / h)
        out = np.array(colour, np.float32)[None, None] * (1.3 - r[:, :, None])
    else:
        raise WasteNetError(f"unknown texture {kind!r}; use one of {', '.join(TEXTURES)}")
    out = out + rng.normal(0, 4, (h, w, 1))
    return np.clip(out, 0, 255).astype(np.uint8)


class BackgroundPool:
    """Random backgrounds: images from folders (resized, cached) mixed with procedural
    textures (a ``texture_share`` of the draws), or textures alone without folders."""

    def __init__(
        self, folders: str | list[str] | None = None, limit: int = 2048, texture_share: float = 0.3
    ) -> None:
        self.paths: list[Path] = []
        self.texture_share = texture_share
        self._cache: dict[tuple[int, int, int], np.ndarray] = {}
        for folder in [folders] if isinstance(folders, str) else folders or []:
            root = Path(folder).expanduser()
            if not root.is_dir():
                raise WasteNetError(f"background_dir {folder}: no such folder")
            self.paths += sorted(p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        self.paths = self.paths[:limit]

    def sample(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        if not self.paths or rng.random() < self.texture_share:
            return texture(TEXTURES[int(rng.integers(len(TEXTURES)))], h, w, rng)
        i = int(rng.integers(len(self.paths)))
        key = (i, h, w)
        if key not in self._cache:
            from wastenet.imageio import read_rgb
            from wastenet.preprocess import fit_image

            self._cache[key] = fit_image(read_rgb(self.paths[i]), (h, w))
        bg = self._cache[key]
        return bg[:, ::-1] if rng.random() < 0.5 else bg


def composite(img: np.ndarray, alpha: np.ndarray, bg: np.ndarray) -> np.ndarray:
    a = alpha[:, :, None]
    return (img * a + bg * (1.0 - a)).astype(np.uint8)


def small_in_frame(
    img: np.ndarray,
    alpha: np.ndarray | None,
    bg: np.ndarray,
    rng: np.random.Generator,
    scale_range: tuple[float, float],
) -> np.ndarray:
    """Shrink the photo (its object, when the backdrop is known) onto a larger background."""
    h, w = img.shape[:2]
    f = rng.uniform(*scale_range)
    sw, sh = max(2, round(w * f)), max(2, round(h * f))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA)
    if alpha is None:
        a = np.ones((sh, sw), np.float32)
    else:
        a = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA)
    x0, y0 = int(rng.integers(0, w - sw + 1)), int(rng.integers(0, h - sh + 1))
    out = bg.copy()
    region = out[y0 : y0 + sh, x0 : x0 + sw]
    out[y0 : y0 + sh, x0 : x0 + sw] = composite(small, a, region)
    return out


def clutter(
    img: np.ndarray,
    companions: list[np.ndarray],
    rng: np.random.Generator,
    scale_range: tuple[float, float],
) -> np.ndarray:
    """Paste the cut-out objects of ``companions`` near the frame's edges, small and
    partly out of frame, so the item in the middle keeps its label and the frame looks
    like a crop from a pile. Companions without a clean mask are skipped."""
    h, w = img.shape[:2]
    out = img.copy()
    for other in companions:
        alpha = object_alpha(other)
        if alpha is None:
            continue
        f = rng.uniform(*scale_range)
        sw, sh = max(2, round(w * f)), max(2, round(h * f))
        small = cv2.resize(other, (sw, sh), interpolation=cv2.INTER_AREA)
        a = cv2.resize(alpha, (sw, sh), interpolation=cv2.INTER_AREA)
        # A centre on one of the four edges, so the companion is partly out of frame.
        edge = int(rng.integers(4))
        cx = [0.0, float(w), rng.uniform(0, w), rng.uniform(0, w)][edge]
        cy = [rng.uniform(0, h), rng.uniform(0, h), 0.0, float(h)][edge]
        x0, y0 = round(cx - sw / 2), round(cy - sh / 2)
        ox0, oy0 = max(0, x0), max(0, y0)
        ox1, oy1 = min(w, x0 + sw), min(h, y0 + sh)
        if ox1 <= ox0 or oy1 <= oy0:
            continue
        part = small[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0]
        pa = a[oy0 - y0 : oy1 - y0, ox0 - x0 : ox1 - x0]
        out[oy0:oy1, ox0:ox1] = composite(part, pa, out[oy0:oy1, ox0:ox1])
    return out
