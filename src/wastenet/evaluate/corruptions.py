"""TrashNet-C: image perturbations modelled on how the paper's bin failed (section 5.4.1).

The real-world test lost accuracy to glare from the ring light on glass and metal,
a dim input with poor white balance, objects too small in the frame, and objects not
fully in view. Each corruption here reproduces one of those (plus the usual camera
faults: blur, sensor noise, JPEG) at severities 1-5.

Where in the pipeline: every function takes the uint8 RGB HWC image *after*
``fit_image`` (the model's input size, exactly what the bin's camera frame becomes)
and returns one of the same shape and dtype; ``normalize`` follows. Perturbing at the
input size keeps the effect per pixel the same as the bin would see.

Deterministic: ``corrupt(img, name, severity, key)`` seeds its randomness from the
image key and the corruption (see ``seed_for``), so a run is reproducible, every
model sees the same images, and severities of one image differ only in strength.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import cv2
import numpy as np

from wastenet.errors import WasteNetError

SEVERITIES = (1, 2, 3, 4, 5)
Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


def _level(values, severity: int):
    return values[int(severity) - 1]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _border_colour(img: np.ndarray) -> np.ndarray:
    """Median colour of the outermost pixels: the backdrop, for a studio photo."""
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]).astype(np.float32)
    return np.median(border, axis=0)


def _object_point(img: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """A random point on the object: pixels far in colour from the backdrop are likelier."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    dist = np.linalg.norm(small.astype(np.float32) - _border_colour(img), axis=2)
    weight = np.clip(dist - 30.0, 0, None).ravel()
    if weight.sum() <= 0:
        return rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    idx = rng.choice(weight.size, p=weight / weight.sum())
    y, x = divmod(int(idx), small.shape[1])
    return (y + rng.random()) * h / small.shape[0], (x + rng.random()) * w / small.shape[1]


def glare(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Specular highlights on the object: bright elliptical blobs, saturated core, soft halo."""
    h, w = img.shape[:2]
    count = _level((1, 1, 2, 2, 3), severity)
    size = _level((0.05, 0.075, 0.10, 0.13, 0.16), severity) * min(h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    mask = np.zeros((h, w), np.float32)
    for _ in range(3):  # draw all three so each severity keeps the same blob layout
        cy, cx = _object_point(img, rng)
        a = size * rng.uniform(0.8, 1.4)
        b = a * rng.uniform(0.3, 0.6)
        theta = rng.uniform(0, np.pi)
        if count <= 0:
            continue
        count -= 1
        dx, dy = xx - cx, yy - cy
        u = (dx * np.cos(theta) + dy * np.sin(theta)) / a
        v = (-dx * np.sin(theta) + dy * np.cos(theta)) / b
        r2 = u**2 + v**2
        # a flat saturated core inside the ellipse, Gaussian falloff (the halo) outside it
        mask = np.maximum(mask, np.where(r2 <= 1.0, 1.0, np.exp(-(r2 - 1.0) * 0.8)))
    light = np.array([255.0, 253.0, 244.0], np.float32)
    out = img.astype(np.float32) * (1 - mask[..., None]) + light * mask[..., None]
    return _to_uint8(out)


def dim_light(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Under-exposure: fewer stops of light in linear space, then back to sRGB-like gamma."""
    stops = _level((0.75, 1.25, 1.75, 2.25, 2.75), severity)
    linear = (img.astype(np.float32) / 255.0) ** 2.2
    return _to_uint8(255.0 * (linear * 2.0**-stops) ** (1 / 2.2))


def white_balance(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A wrong colour temperature: red up and blue down (warm) or the reverse (cool)."""
    s = _level((0.12, 0.22, 0.32, 0.42, 0.55), severity)
    warm = rng.random() < 0.5
    gains = np.array([1 + s, 1 + s / 5, 1 - s * 0.6] if warm else [1 - s * 0.6, 1 + s / 8, 1 + s])
    return _to_uint8(img.astype(np.float32) * gains.astype(np.float32))


def _backdrop_tone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The bin's light grey/white card, leaning towards the photo's own backdrop when that
    is light too (a studio photo), so the seam is soft; a frame-filling object (border not
    light) gets the plain card."""
    card = rng.uniform(215, 245) + rng.uniform(-4, 4, size=3)
    border = _border_colour(img)
    lean = 0.6 * float(np.clip((border.min() - 170.0) / 40.0, 0.0, 1.0))
    return (1 - lean) * card + lean * border


def _card_background(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plain card under a ring light: faint radial falloff and grain."""
    h, w = img.shape[:2]
    tone = _backdrop_tone(img, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((yy - h / 2) / h) ** 2 + ((xx - w / 2) / w) ** 2)
    shade = 1.0 - 0.12 * r[..., None]
    grain = rng.normal(0, 2.0, size=(h, w, 1))
    return tone * shade + grain


def _textured_background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A mid-tone textured surface (wood-like streaks over blotchy low-frequency noise)."""
    base = np.array(rng.choice([[150, 115, 80], [120, 120, 115], [170, 150, 120]]), np.float32)
    blotch = cv2.resize(rng.normal(0, 1, (max(2, h // 24), max(2, w // 24))), (w, h))
    yy = np.mgrid[0:h, 0:w][0].astype(np.float32)
    freq = rng.uniform(0.08, 0.2)
    streaks = np.sin(yy * freq + 3 * blotch) * 0.5
    texture = 18 * blotch + 14 * streaks + rng.normal(0, 5, (h, w))
    return base[None, None, :] + texture[..., None]


def _zoom_out(img, severity, rng, background: np.ndarray) -> np.ndarray:
    """Shrink the photo and lay it on ``background`` with feathered edges (no hard frame)."""
    h, w = img.shape[:2]
    scale = _level((0.8, 0.65, 0.5, 0.4, 0.3), severity)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
    # near the centre, as an item dropped under the camera; the same offset at each severity
    oy, ox = rng.uniform(-0.5, 0.5, size=2)
    y0 = int(round((h - sh) / 2 * (1 + oy)))
    x0 = int(round((w - sw) / 2 * (1 + ox)))
    feather = max(1.0, 0.08 * min(sh, sw))
    ry = np.minimum(np.arange(sh), np.arange(sh)[::-1]) + 0.5
    rx = np.minimum(np.arange(sw), np.arange(sw)[::-1]) + 0.5
    alpha = np.clip(np.minimum.outer(ry, rx) / feather, 0, 1)[..., None]
    out = background.astype(np.float32).copy()
    region = out[y0 : y0 + sh, x0 : x0 + sw]
    out[y0 : y0 + sh, x0 : x0 + sw] = alpha * small + (1 - alpha) * region
    return _to_uint8(out)


def zoom_out_card(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Object small in frame on the paper's test bed: shrunk and placed on a white card."""
    return _zoom_out(img, severity, rng, _card_background(img, rng))


def zoom_out_textured(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Object small in frame over a textured surface instead of a clean backdrop."""
    h, w = img.shape[:2]
    return _zoom_out(img, severity, rng, _textured_background(h, w, rng))


def partial_framing(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The object partly out of view: the frame shifted, the uncovered side shows backdrop."""
    h, w = img.shape[:2]
    shift = _level((0.15, 0.25, 0.35, 0.45, 0.55), severity)
    angle = rng.uniform(0, 2 * np.pi)
    dx, dy = round(np.cos(angle) * shift * w), round(np.sin(angle) * shift * h)
    fill = _backdrop_tone(img, rng)
    out = np.empty(img.shape, np.float32)
    out[:] = fill + rng.normal(0, 2.0, size=(h, w, 1))
    src = img[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return _to_uint8(out)


def motion_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Camera or item moving during exposure: a line kernel at a random angle."""
    length = max(3, round(_level((0.012, 0.022, 0.035, 0.05, 0.07), severity) * max(img.shape)))
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), rng.uniform(0, 180), 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def defocus_blur(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Out of focus: a disc kernel (the lens's circle of confusion)."""
    radius = max(1, round(_level((0.005, 0.009, 0.014, 0.02, 0.028), severity) * max(img.shape)))
    size = 2 * radius + 1
    kernel = np.zeros((size, size), np.float32)
    cv2.circle(kernel, (radius, radius), radius, 1.0, -1, lineType=cv2.LINE_AA)
    kernel /= kernel.sum()
    return cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)


def sensor_noise(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Small-sensor noise: signal-dependent shot noise plus Gaussian read noise."""
    shot = _level((0.6, 1.2, 2.0, 3.0, 4.5), severity)  # variance per unit of signal
    read = _level((3.0, 5.0, 8.0, 11.0, 15.0), severity)  # std of read noise, 0-255 units
    x = img.astype(np.float32)
    sigma = np.sqrt(shot * x + read**2)
    return _to_uint8(x + rng.standard_normal(x.shape, dtype=np.float32) * sigma)


def jpeg(img: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy JPEG compression, as a cheap camera stream or an uploaded frame would have."""
    quality = _level((50, 30, 18, 10, 6), severity)
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
        raise WasteNetError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


CORRUPTIONS: dict[str, Corruption] = {
    "glare": glare,
    "dim_light": dim_light,
    "white_balance": white_balance,
    "zoom_out_card": zoom_out_card,
    "zoom_out_textured": zoom_out_textured,
    "partial_framing": partial_framing,
    "motion_blur": motion_blur,
    "defocus_blur": defocus_blur,
    "sensor_noise": sensor_noise,
    "jpeg": jpeg,
}


def seed_for(key: str, name: str) -> int:
    """A stable 64-bit seed from (image key, corruption); not Python's salted hash().

    The severity is left out on purpose: every severity of one image draws the same
    layout (blob positions, shift direction, colour cast, noise pattern) and differs
    in strength only, so severity is monotone in effect and results are comparable.
    """
    digest = hashlib.blake2b(f"{key}|{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def corrupt(img: np.ndarray, name: str, severity: int, key: str = "") -> np.ndarray:
    """Apply one corruption at one severity (1-5) to a uint8 RGB HWC image."""
    if name not in CORRUPTIONS:
        raise WasteNetError(f"unknown corruption {name!r}; known: {', '.join(CORRUPTIONS)}")
    if int(severity) not in SEVERITIES:
        raise WasteNetError(f"severity must be 1-5, got {severity}")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise WasteNetError(f"corruptions need a uint8 HxWx3 image, got {img.dtype} {img.shape}")
    rng = np.random.default_rng(seed_for(key, name))
    out = CORRUPTIONS[name](img, int(severity), rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    return out
