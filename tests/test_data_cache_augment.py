"""The image cache returns exactly the shared preprocessing; augmentation semantics."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.classes import DEFAULT_INPUT_SIZE, input_size_for
from wastenet.data.augment import AugmentConfig, Augmenter, affine_matrix, preset
from wastenet.data.background import object_alpha, texture
from wastenet.data.cache import ImageCache, parse_size
from wastenet.data.split import build_split
from wastenet.errors import ConfigError, WasteNetError
from wastenet.imageio import read_rgb
from wastenet.preprocess import fit_image


@pytest.fixture
def manifest(tmp_path):
    root = make_image_folder(tmp_path / "src", per_class=4, size_wh=(48, 64))
    return build_split([root], workers=1, progress=False).manifest


def test_cache_matches_fit_image_and_is_reused(tmp_path, manifest):
    items = manifest.items()
    cache = ImageCache(items, (24, 32), tmp_path / "cache", workers=1, progress=False)
    for i, it in enumerate(items):
        np.testing.assert_array_equal(cache[i], fit_image(read_rgb(it.path), (24, 32)))
    mtime = cache.path.stat().st_mtime_ns
    again = ImageCache(items, (24, 32), tmp_path / "cache", workers=1, progress=False)
    assert again.path == cache.path and again.path.stat().st_mtime_ns == mtime
    # a subset is served from the superset file, rows mapped
    subset = manifest.items(split="val")
    part = ImageCache(subset, (24, 32), tmp_path / "cache", workers=1, progress=False)
    assert part.path == cache.path
    np.testing.assert_array_equal(part[0], fit_image(read_rgb(subset[0].path), (24, 32)))


def test_cache_rebuilds_when_items_change(tmp_path, manifest):
    items = manifest.items()
    first = ImageCache(items[:5], (24, 32), tmp_path / "c", workers=1, progress=False)
    changed = [items[0].__class__(**{**items[0].__dict__, "sha256": "0" * 64}), *items[1:5]]
    second = ImageCache(changed, (24, 32), tmp_path / "c", workers=1, progress=False)
    assert second.path != first.path
    assert len(list((tmp_path / "c").glob("*.npy"))) == 2


def test_cache_dir_from_env(tmp_path, manifest, monkeypatch):
    monkeypatch.setenv("WASTENET_CACHE", str(tmp_path / "envcache"))
    cache = ImageCache(manifest.items()[:3], (12, 16), workers=1, progress=False)
    assert cache.path.parent == tmp_path / "envcache"


def test_parse_size():
    assert parse_size("288x384") == (288, 384)  # HEIGHTxWIDTH
    assert parse_size("75%") == input_size_for(75) == DEFAULT_INPUT_SIZE  # a resolution
    assert parse_size("50%") == (192, 256)
    for bad in ("big", "nan%", "-50%", "0x10"):
        with pytest.raises(WasteNetError):
            parse_size(bad)


def _square(h=200, w=200, side=40) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - side) // 2, (w - side) // 2
    img[y0 : y0 + side, x0 : x0 + side] = 255
    return img


def _centre_side(img: np.ndarray) -> int:
    """Width of the bright blob that covers the centre pixel."""
    mask = (img[:, :, 0] > 127).astype(np.uint8)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    lab = labels[img.shape[0] // 2, img.shape[1] // 2]
    assert lab != 0
    return int(stats[lab, cv2.CC_STAT_WIDTH])


@pytest.mark.parametrize("s, expected", [(2.0, 20), (0.5, 80), (1.25, 32)])
def test_zoom_scale_semantics_keras(s, expected):
    """s > 1 zooms out: a centred square shrinks by 1/s; s < 1 magnifies."""
    aug = Augmenter(preset("table3"))
    out = aug.geometric(
        _square(),
        np.random.default_rng(0),
        flip_h=False,
        flip_v=False,
        angle_deg=0.0,
        tx=0.0,
        ty=0.0,
        s=s,
    )
    assert abs(_centre_side(out) - expected) <= 2


def test_zoom_range_is_one_plus_minus_x():
    aug = Augmenter(AugmentConfig(zoom=0.75))
    rng = np.random.default_rng(1)
    scales = np.array([aug.sample_params(10, 10, rng)["s"] for _ in range(4000)])
    assert 0.25 <= scales.min() < 0.3 and 1.7 < scales.max() <= 1.75
    full = Augmenter(preset("table1"))
    scales = np.array([full.sample_params(10, 10, rng)["s"] for _ in range(4000)])
    assert scales.min() == pytest.approx(full.cfg.min_scale) and scales.max() <= 2.0


def test_flips_and_quarter_turn():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 30, 3), dtype=np.uint8)
    aug = Augmenter(AugmentConfig())
    fixed = dict(angle_deg=0.0, tx=0.0, ty=0.0, s=1.0)
    np.testing.assert_array_equal(
        aug.geometric(img, rng, flip_h=True, flip_v=False, **fixed), img[:, ::-1]
    )
    np.testing.assert_array_equal(
        aug.geometric(img, rng, flip_h=False, flip_v=True, **fixed), img[::-1]
    )
    turned = aug.geometric(
        img, rng, flip_h=False, flip_v=False, angle_deg=90.0, tx=0.0, ty=0.0, s=1.0
    )
    assert any(np.array_equal(turned, np.rot90(img, k)) for k in (1, 3))


def test_translation_moves_content():
    m = affine_matrix(100, 100, False, False, 0.0, 10.0, 0.0, 1.0)
    # output pixel (50, 50) reads input (40, 50): the content moved right by 10
    assert np.allclose(m @ np.array([50.0, 50.0, 1.0]), [40.0, 50.0])


def test_all_extras_keep_shape_and_dtype_and_change_pixels(tmp_path):
    img = cv2.resize(_square(60, 80, 24), (80, 60))
    img[img == 0] = 235  # a plain bright studio backdrop
    img[20:40, 30:50] = (180, 40, 30)
    assert object_alpha(img) is not None
    every = AugmentConfig(
        flip_h=False,
        flip_v=False,
        rotation_deg=0,
        translate=0,
        zoom=0,
        jitter_p=1,
        white_balance_p=1,
        gamma_p=1,
        glare_p=1,
        blur_p=1,
        noise_p=1,
        jpeg_p=1,
        background_p=1,
    )
    rng = np.random.default_rng(0)
    out = Augmenter(every)(img, rng)
    assert out.shape == img.shape and out.dtype == np.uint8 and not np.array_equal(out, img)
    small = Augmenter(AugmentConfig(small_p=1, zoom=0, rotation_deg=0, translate=0))(img, rng)
    assert small.shape == img.shape
    for kind in ("wood", "floor", "noise", "gradient", "bin"):
        assert texture(kind, 20, 30, rng).shape == (20, 30, 3)


def test_paper_presets_have_extras_off():
    for name in ("table1", "table3"):
        cfg = preset(name)
        assert all(v == 0 for k, v in cfg.__dict__.items() if k.endswith("_p"))
    assert preset("table1").zoom == 1.0 and preset("table3").zoom == 0.75
    with pytest.raises(ConfigError):
        preset("fancy")
    with pytest.raises(ConfigError):
        AugmentConfig(fill="mirror")


def _studio_object(colour, w=80, h=60) -> np.ndarray:
    img = np.full((h, w, 3), 235, np.uint8)
    img[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = colour
    return img


def test_clutter_pastes_companions_at_the_edges_and_keeps_the_centre():
    from wastenet.data.background import clutter

    item = _studio_object((30, 60, 200))
    other = _studio_object((200, 40, 30))
    rng = np.random.default_rng(0)
    out = clutter(item, [other, other], rng, (0.4, 0.5))
    assert out.shape == item.shape and out.dtype == np.uint8
    red = (out[..., 0] > 150) & (out[..., 2] < 80)
    assert red.any()  # a companion's object arrived
    h, w = item.shape[:2]
    assert not red[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].all()  # the item stays in view
    # A companion without a clean mask (no backdrop) is skipped.
    noise = np.random.default_rng(1).integers(0, 255, item.shape, dtype=np.uint8)
    assert np.array_equal(clutter(item, [noise], rng, (0.4, 0.5)), item)


def test_training_samples_get_companions_when_clutter_is_on(tmp_path):
    from wastenet.train.data import CachedImages

    images = [_studio_object(c) for c in ((30, 60, 200), (200, 40, 30), (40, 200, 90))]

    class Items:
        def __init__(self, labels):
            self.labels = labels

    items = [Items(("plastic",)), Items(("metal",)), Items(("glass",))]
    aug = Augmenter(AugmentConfig(clutter_p=1.0, flip_h=False, flip_v=False, rotation_deg=0,
                                  translate=0, zoom=0, clutter_scale=(0.4, 0.5)))  # fmt: skip
    assert aug.wants_companions
    data = CachedImages(items, images, aug, seed=0)
    outs = [data[0][0].numpy() for _ in range(2)]
    assert np.array_equal(outs[0], outs[1])  # deterministic per (seed, epoch, index)
    changed = [not np.array_equal(data[i][0].numpy(), images[i]) for i in range(3)]
    assert any(changed)
    plain = CachedImages(items, images, Augmenter(AugmentConfig(zoom=0)), seed=0)
    assert not plain.augment.wants_companions
