"""Training augmentation on uint8 HWC RGB images (numpy + OpenCV only).

The paper's augmentation (tables 1 and 3) is random flips (horizontal and vertical),
rotation up to 180 degrees, translation up to 10 % and zoom up to 100 % (table 1) or
75 % (table 3), with Keras' defaults: bilinear sampling and ``reflect`` border fill.
All of it is composed into ONE ``cv2.warpAffine`` per image.

Zoom, exactly as Keras ``RandomZoom(x)`` (the paper's TF code): the sampling grid is
scaled about the centre by ``s ~ U[1 - x, 1 + x]``, clamped to ``min_scale``. An output
pixel at offset ``d`` from the centre reads the input at ``s * d``. So ``s > 1`` zooms
OUT (the object shrinks by ``1/s`` and reflected copies fill the border) and ``s < 1``
zooms IN (magnifies by ``1/s``). With x = 1.0 (table 1) ``s`` reaches ~0, i.e. extreme
magnification of a few pixels: the "very poor inputs" of the paper's figure 11.

Beyond the paper (all off in the paper presets, on in ``ours``): colour jitter, white
balance, gamma / dim light, specular glare, blur, sensor noise, JPEG re-encoding,
background swap for studio photos and "small in frame". Each is a probability plus a
strength in ``AugmentConfig``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import cv2
import numpy as np

from wastenet.errors import ConfigError


@dataclass
class AugmentConfig:
    # The paper (tables 1 and 3).
    flip_h: bool = True
    flip_v: bool = True
    rotation_deg: float = 180.0  # angle ~ U[-r, r]
    translate: float = 0.1  # shift ~ U[-t, t] * width (x) and * height (y)
    zoom: float = 0.75  # Keras RandomZoom(x): grid scale s ~ U[1-x, 1+x]
    min_scale: float = 0.05  # clamp for s (zoom 1.0 can draw s ~ 0)
    fill: str = "reflect"  # reflect | constant | edge | wrap
    # Beyond the paper: probability (p) and strength of each.
    jitter_p: float = 0.0
    brightness: float = 0.25  # factor ~ U[1-b, 1+b]
    contrast: float = 0.25
    saturation: float = 0.3
    hue_deg: float = 8.0
    white_balance_p: float = 0.0
    white_balance: float = 0.12  # per-channel gain ~ U[1-w, 1+w]
    gamma_p: float = 0.0
    gamma: float = 0.5  # gamma ~ exp(U[-g, g])
    dim: float = 0.5  # light level ~ U[1-d, 1]
    glare_p: float = 0.0
    glare_strength: float = 0.8  # peak added brightness (fraction of 255)
    blur_p: float = 0.0
    blur_sigma: float = 1.5  # sigma ~ U[0.3, s] px
    noise_p: float = 0.0
    noise_sigma: float = 0.04  # std ~ U[0, n] * 255
    jpeg_p: float = 0.0
    jpeg_quality: int = 40  # quality ~ U[q, 95]
    background_p: float = 0.0  # swap a plain studio background
    background_dir: str | list[str] | None = None  # image folders to paste onto (+ textures)
    small_p: float = 0.0  # shrink the object onto a larger background
    small_scale: tuple[float, float] = (0.35, 0.8)
    clutter_p: float = 0.0  # paste 1-2 other training objects around the item (distractors)
    clutter_scale: tuple[float, float] = (0.25, 0.5)  # their size, a share of the frame

    def __post_init__(self) -> None:
        if self.fill not in _BORDERS:
            raise ConfigError(f"augment.fill: {self.fill!r}; use one of {', '.join(_BORDERS)}")
        if not 0.0 <= self.zoom < 10 or self.min_scale <= 0:
            raise ConfigError("augment.zoom must be >= 0 and min_scale > 0")
        probs = {k: v for k, v in self.__dict__.items() if k.endswith("_p")}
        bad = [k for k, v in probs.items() if not 0.0 <= v <= 1.0]
        if bad:
            raise ConfigError(f"augment: probabilities must be in [0, 1]: {', '.join(bad)}")


_BORDERS = {
    "reflect": cv2.BORDER_REFLECT,  # Keras "reflect": d c b a | a b c d | d c b a
    "constant": cv2.BORDER_CONSTANT,
    "edge": cv2.BORDER_REPLICATE,
    "wrap": cv2.BORDER_WRAP,
}


def preset(name: str, zoom: float | None = None) -> AugmentConfig:
    """table1 (zoom 100 %), table3 (zoom 75 %), ours (table 3 + real-world effects), none."""
    if name == "table1":
        cfg = AugmentConfig(zoom=1.0)
    elif name == "table3":
        cfg = AugmentConfig(zoom=0.75)
    elif name == "ours":
        cfg = AugmentConfig(
            zoom=0.3,
            jitter_p=0.8,
            white_balance_p=0.5,
            gamma_p=0.4,
            glare_p=0.25,
            blur_p=0.2,
            noise_p=0.3,
            jpeg_p=0.3,
            background_p=0.3,
            small_p=0.25,
        )
    elif name == "none":
        cfg = AugmentConfig(flip_h=False, flip_v=False, rotation_deg=0.0, translate=0.0, zoom=0.0)
    else:
        raise ConfigError(f"unknown augmentation preset {name!r}; use table1, table3, ours, none")
    return replace(cfg, zoom=zoom) if zoom is not None else cfg


def random_flips(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The "light" augmentation (FixRes and consolidation phases): a lossless horizontal
    and vertical flip, each with probability 0.5; nothing resampled, nothing recoloured."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    if rng.random() < 0.5:
        img = img[::-1]
    return img


def affine_matrix(
    h: int, w: int, flip_h: bool, flip_v: bool, angle_deg: float, tx: float, ty: float, s: float
) -> np.ndarray:
    """2x3 output->input map: flip, rotate, translate, zoom (Keras layer order)."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    centre = np.array([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=np.float64)
    uncentre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
    flip = np.diag([-1.0 if flip_h else 1.0, -1.0 if flip_v else 1.0, 1.0])
    a = math.radians(angle_deg)
    rot_inv = np.array([[math.cos(a), math.sin(a), 0], [-math.sin(a), math.cos(a), 0], [0, 0, 1]])
    shift_inv = np.array([[1, 0, -tx], [0, 1, -ty], [0, 0, 1]], dtype=np.float64)
    zoom_inv = np.diag([s, s, 1.0])
    # input = F^-1 R^-1 T^-1 Z^-1 (output), every step about the centre.
    m = centre @ flip @ rot_inv @ shift_inv @ zoom_inv @ uncentre
    return m[:2]


class Augmenter:
    """``Augmenter(cfg)(img, rng) -> img``: uint8 HWC RGB in, same shape out.

    ``companions`` (other training images of the same size) feed the clutter step: real
    items seldom lie alone, and a crop of one holds parts of its neighbours."""

    def __init__(self, cfg: AugmentConfig | None = None) -> None:
        self.cfg = cfg or AugmentConfig()
        self._backgrounds = None

    @property
    def wants_companions(self) -> bool:
        return self.cfg.clutter_p > 0

    def __call__(
        self, img: np.ndarray, rng: np.random.Generator, companions: list | None = None
    ) -> np.ndarray:
        cfg = self.cfg
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Augmenter expects uint8 HxWx3, got {img.dtype} {img.shape}")
        if cfg.background_p or cfg.small_p:
            img = self._scene(img, rng)
        if companions and cfg.clutter_p and rng.random() < cfg.clutter_p:
            from wastenet.data.background import clutter

            img = clutter(img, companions, rng, cfg.clutter_scale)
        img = self.geometric(img, rng)
        return self.photometric(img, rng)

    def _scene(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        from wastenet.data import background as bg

        swap = rng.random() < self.cfg.background_p
        small = rng.random() < self.cfg.small_p
        if not (swap or small):
            return img
        if self._backgrounds is None:
            self._backgrounds = bg.BackgroundPool(self.cfg.background_dir)
        alpha = bg.object_alpha(img)
        h, w = img.shape[:2]
        if small:
            return bg.small_in_frame(
                img, alpha, self._backgrounds.sample(rng, h, w), rng, self.cfg.small_scale
            )
        if alpha is None:  # not a plain-background photo: leave it
            return img
        return bg.composite(img, alpha, self._backgrounds.sample(rng, h, w))

    def sample_params(self, h: int, w: int, rng: np.random.Generator) -> dict:
        cfg = self.cfg
        return {
            "flip_h": bool(cfg.flip_h and rng.random() < 0.5),
            "flip_v": bool(cfg.flip_v and rng.random() < 0.5),
            "angle_deg": float(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)),
            "tx": float(rng.uniform(-cfg.translate, cfg.translate) * w),
            "ty": float(rng.uniform(-cfg.translate, cfg.translate) * h),
            "s": max(cfg.min_scale, float(rng.uniform(1 - cfg.zoom, 1 + cfg.zoom))),
        }

    def geometric(self, img: np.ndarray, rng: np.random.Generator, **fixed) -> np.ndarray:
        """The paper's flips, rotation, translation and zoom in one warpAffine."""
        h, w = img.shape[:2]
        params = {**self.sample_params(h, w, rng), **fixed}
        if not any(
            (
                params["flip_h"],
                params["flip_v"],
                params["angle_deg"],
                params["tx"],
                params["ty"],
                params["s"] != 1.0,
            )
        ):
            return img
        m = affine_matrix(h, w, **params)
        return cv2.warpAffine(
            img,
            m,
            (w, h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=_BORDERS[self.cfg.fill],
        )

    def photometric(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cfg = self.cfg
        if cfg.white_balance_p and rng.random() < cfg.white_balance_p:
            gains = rng.uniform(1 - cfg.white_balance, 1 + cfg.white_balance, 3)
            img = _apply_lut(img, [np.clip(np.arange(256) * g, 0, 255) for g in gains])
        if cfg.jitter_p and rng.random() < cfg.jitter_p:
            img = color_jitter(img, rng, cfg)
        if cfg.gamma_p and rng.random() < cfg.gamma_p:
            gamma = math.exp(rng.uniform(-cfg.gamma, cfg.gamma))
            light = rng.uniform(1 - cfg.dim, 1.0)
            lut = np.clip(255.0 * light * (np.arange(256) / 255.0) ** gamma, 0, 255)
            img = _apply_lut(img, [lut] * 3)
        if cfg.glare_p and rng.random() < cfg.glare_p:
            img = add_glare(img, rng, cfg.glare_strength)
        if cfg.blur_p and rng.random() < cfg.blur_p:
            img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, max(0.31, cfg.blur_sigma)))
        if cfg.noise_p and rng.random() < cfg.noise_p:
            sigma = rng.uniform(0, cfg.noise_sigma) * 255.0
            noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
            img = np.clip(img + noise, 0, 255).astype(np.uint8)
        if cfg.jpeg_p and rng.random() < cfg.jpeg_p:
            q = int(rng.integers(min(cfg.jpeg_quality, 95), 96))
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
            if ok:
                img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])
        return img


def _apply_lut(img: np.ndarray, luts: list[np.ndarray]) -> np.ndarray:
    lut = np.stack([np.asarray(t, dtype=np.float64) for t in luts], axis=1)
    return cv2.LUT(img, lut.round().astype(np.uint8).reshape(256, 1, 3))


def color_jitter(img: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue, in random order of effect strength."""
    b = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)
    mean = float(img.mean())
    lut = np.clip((np.arange(256) * b - mean * b) * c + mean * b, 0, 255)
    img = _apply_lut(img, [lut] * 3)
    sat = rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    hue = rng.uniform(-cfg.hue_deg, cfg.hue_deg) / 2.0  # OpenCV hue is 0..180
    if abs(sat - 1) > 1e-3 or abs(hue) > 0.25:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[:, :, 0] = ((hsv[:, :, 0].astype(np.int16) + round(hue)) % 180).astype(np.uint8)
        hsv[:, :, 1] = cv2.convertScaleAbs(hsv[:, :, 1], alpha=sat)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return img


def add_glare(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """1-3 soft specular blobs, as from a ring light on a shiny bottle (paper 4.3.1)."""
    h, w = img.shape[:2]
    light = np.zeros((h, w), dtype=np.float32)
    for _ in range(int(rng.integers(1, 4))):
        r = rng.uniform(0.03, 0.12) * min(h, w)
        cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
        axes = (max(1, int(r * rng.uniform(1, 2.5))), max(1, int(r)))
        cv2.ellipse(light, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
    light = cv2.GaussianBlur(light, (0, 0), max(1.0, 0.04 * min(h, w)))
    peak = float(light.max()) or 1.0
    add = (light / peak * strength * rng.uniform(0.5, 1.0) * 255.0)[:, :, None]
    return np.clip(img + add, 0, 255).astype(np.uint8)
