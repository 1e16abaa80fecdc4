import json

import numpy as np
import pytest

from wastenet.classes import input_size_for
from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta, read_bundle_meta
from wastenet.preprocess import fit_image, normalize


def test_input_size_is_landscape_75pct():
    assert input_size_for(75) == (288, 384)
    assert input_size_for(100) == (384, 512)


def test_fit_image_rotates_portrait_and_keeps_aspect():
    portrait = np.zeros((512, 384, 3), np.uint8)
    portrait[:10] = 255  # a white band at the top edge
    out = fit_image(portrait, (288, 384))
    assert out.shape == (288, 384, 3)
    # after a counter-clockwise quarter turn, the top band is on the left edge
    assert out[:, :5].mean() > 200 and out[:, -5:].mean() < 5


def test_fit_image_centre_crops_square():
    square = np.zeros((400, 400, 3), np.uint8)
    square[:50] = 255  # the top eighth is cropped away for a 4:3 target
    out = fit_image(square, (288, 384))
    assert out.shape == (288, 384, 3)
    assert out[:3].mean() < 5


def test_normalize_shapes_and_values():
    batch = np.full((2, 4, 6, 3), 255, np.uint8)
    out = normalize(batch, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert out.shape == (2, 3, 4, 6) and out.dtype == np.float32
    assert np.allclose(out, 1.0)


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))],
)
def test_normalize_lookup_is_bit_identical_to_per_pixel_arithmetic(mean, std):
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (3, 7, 5, 3), dtype=np.uint8)
    batch[0, 0, 0] = (0, 128, 255)  # both ends of the range
    m = np.asarray(mean, np.float32)
    sd = np.asarray(std, np.float32)
    want = ((batch.astype(np.float32) * np.float32(1 / 255) - m) / sd).transpose(0, 3, 1, 2)
    out = normalize(batch, mean, std)
    assert out.flags["C_CONTIGUOUS"] and np.array_equal(out, want)
    assert np.array_equal(normalize(batch[1], mean, std), want[1:2])  # one HWC image
    as_float = normalize(batch.astype(np.float32), mean, std)  # not uint8: computed per pixel
    assert np.array_equal(as_float, want)


def test_bundle_meta_roundtrip_and_errors(tmp_path):
    meta = BundleMeta("tiny", ["a", "b"], [8, 8], [0.5] * 3, [0.5] * 3)
    assert BundleMeta.from_json(meta.to_json()) == meta
    with pytest.raises(ModelFileError, match="lacks"):
        BundleMeta.from_json(json.dumps({"labels": []}))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 20)
    with pytest.raises(ModelFileError):
        read_bundle_meta(bad)
