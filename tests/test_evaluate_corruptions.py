"""TrashNet-C corruptions: they change the image, keep shape/dtype, grow with severity,
and are deterministic."""

import cv2
import numpy as np
import pytest

from conftest import CLASS_COLOURS, make_image
from wastenet.errors import WasteNetError
from wastenet.evaluate.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from wastenet.evaluate.robustness import run_robustness, save_preview_grid
from wastenet.preprocess import fit_image

GEOMETRIC = ("zoom_out_card", "zoom_out_textured", "partial_framing")


@pytest.fixture(scope="module")
def image():
    """A blue (plastic) disc on a light background, smoothed like a photo, 144x192."""
    raw = np.asarray(make_image(CLASS_COLOURS["plastic"], (192, 144), seed=3))
    return cv2.GaussianBlur(fit_image(raw, (144, 192)), (0, 0), 1.0)


def object_area(img: np.ndarray) -> int:
    """Pixels of the blue object still in view (no background here is that blue)."""
    r, b = img[..., 0].astype(int), img[..., 2].astype(int)
    return int(((b - r) > 100).sum())


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_changes_image_keeps_shape_and_grows_with_severity(image, name):
    outs = [corrupt(image, name, s, key="img-1") for s in SEVERITIES]
    for out in outs:
        assert out.shape == image.shape and out.dtype == np.uint8
    diffs = [np.abs(o.astype(np.int16) - image).mean() for o in outs]
    assert diffs[0] > 0.5, f"{name} at severity 1 barely changes the image"
    # photometric: mean absolute change grows; geometric: less of the object stays in view
    effect = [-object_area(o) for o in outs] if name in GEOMETRIC else diffs
    assert all(b >= a for a, b in zip(effect, effect[1:], strict=False)), (name, effect)
    assert effect[-1] > effect[0], (name, effect)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruption_is_deterministic_per_key(image, name):
    a = corrupt(image, name, 3, key="item-a")
    assert np.array_equal(a, corrupt(image, name, 3, key="item-a"))
    if name not in ("dim_light", "defocus_blur", "jpeg"):  # these draw no randomness
        assert not np.array_equal(a, corrupt(image, name, 3, key="item-b"))


def test_corrupt_rejects_bad_input(image):
    with pytest.raises(WasteNetError, match="unknown corruption"):
        corrupt(image, "rain", 1)
    with pytest.raises(WasteNetError, match="severity"):
        corrupt(image, "glare", 6)
    with pytest.raises(WasteNetError, match="uint8"):
        corrupt(image.astype(np.float32), "glare", 1)


def test_glare_brightens_and_dim_light_darkens(image):
    assert corrupt(image, "glare", 5, "k").mean() > image.mean()
    assert corrupt(image, "dim_light", 5, "k").mean() < image.mean() * 0.5


def test_run_robustness_with_a_colour_rule_classifier(image, tmp_path):
    """A predictor that reads the mean colour: dim light must hurt it, the table is full."""
    from wastenet.classes import CLASSES

    colours = np.array([CLASS_COLOURS[c] for c in CLASSES], np.float32)

    def predict(batch):
        centre = batch[:, 24:48, 32:64].reshape(len(batch), -1, 3).mean(axis=1)
        dist = np.linalg.norm(centre[:, None, :] - colours[None], axis=2)
        logits = -dist / 10
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    imgs = np.stack(
        [
            fit_image(np.asarray(make_image(CLASS_COLOURS[c], (128, 96), seed=i)), (72, 96))
            for i, c in enumerate(CLASSES)
        ]
    )
    labels = [(c,) for c in CLASSES]
    result = run_robustness(
        predict, imgs, labels, [str(i) for i in range(5)], ["dim_light", "jpeg"], (1, 5), 2
    )
    assert result["clean_accuracy"] == 1.0
    assert set(result["accuracy"]) == {"dim_light", "jpeg"}
    assert result["accuracy"]["dim_light"]["5"] < 1.0
    assert result["relative_to_clean"] == pytest.approx(result["mean_corruption_accuracy"])
    path = save_preview_grid(image, tmp_path / "p.png", ["glare", "jpeg"], (1, 5))
    assert path.stat().st_size > 1000
