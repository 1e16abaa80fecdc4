"""Temperature scaling: the fit, ECE, the bundle round trip and every artifact applying T."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.evaluate.temperature import (
    expected_calibration_error,
    fit_temperature,
    label_masks,
    rescale,
    set_nll,
)
from wastenet.meta import BundleMeta


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overconfident(true_t: float, n: int = 4000, seed: int = 0):
    """Labels drawn from softmax(z); the model reports softmax(z * true_t)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, len(CLASSES)))
    p_true = softmax(z)
    labels = [CLASSES[rng.choice(len(CLASSES), p=row)] for row in p_true]
    return softmax(z * true_t), label_masks([(c,) for c in labels])


def test_fit_recovers_the_temperature_and_lowers_nll_and_ece():
    probs, masks = overconfident(3.0)
    t = fit_temperature(probs, masks)
    assert t == pytest.approx(3.0, rel=0.1)
    after = rescale(probs, t)
    assert set_nll(after, masks) < set_nll(probs, masks)
    assert expected_calibration_error(after, masks) < 0.5 * expected_calibration_error(probs, masks)
    assert (after.argmax(1) == probs.argmax(1)).all()  # accuracy cannot change


def test_underconfident_model_gets_t_below_one():
    probs, masks = overconfident(0.4)
    assert fit_temperature(probs, masks) < 0.6


def test_set_label_scores_the_summed_probability():
    probs = np.array([[0.45, 0.05, 0.05, 0.4, 0.05]])  # cardboard, glass, metal, paper, plastic
    masks = label_masks([("cardboard", "paper")])
    assert set_nll(probs, masks) == pytest.approx(-np.log(0.85))
    assert expected_calibration_error(probs, masks) == pytest.approx(0.55)  # right, 45 % sure


def test_a_calibrated_bundle_carries_t_into_every_artifact(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from wastenet.accelerate import load_engine
    from wastenet.accelerate.export import export_model

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, len(CLASSES)),
    ).eval()  # fmt: skip
    meta = BundleMeta("tiny", list(CLASSES), [32, 32], [0.5] * 3, [0.5] * 3, temperature=2.5)
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = softmax(model(torch.from_numpy(x)).numpy() / 2.5)
    from wastenet.accelerate.backends.torch_backend import TorchEngine

    np.testing.assert_allclose(TorchEngine.from_model(model, meta).predict(x), want, atol=1e-6)
    chunked = np.concatenate([x] * 20)  # more than one forward pass (CHUNK images each)
    np.testing.assert_allclose(
        TorchEngine.from_model(model, meta).predict(chunked), np.concatenate([want] * 20), atol=1e-6
    )
    formats = ["onnx", "openvino"] if _has("openvino") else ["onnx"]
    for result in export_model(model, meta, formats, tmp_path):
        engine = load_engine(result.path)
        assert engine.meta.temperature == 2.5
        np.testing.assert_allclose(engine.predict(x), want, atol=1e-5)


def test_calibrate_command_writes_a_new_bundle(tmp_path, capsys):
    pytest.importorskip("timm")
    from wastenet.cli import main
    from wastenet.data.manifest import Item, Manifest
    from wastenet.meta import read_bundle_meta
    from wastenet.models import create_model, save_bundle

    images = make_image_folder(tmp_path / "imgs", per_class=3)
    items = [
        Item(str(p), "tiny", (p.parent.name,), hashlib.sha256(p.read_bytes()).hexdigest(), "val")
        for p in sorted(images.rglob("*.jpg"))
    ]
    manifest = Manifest(all_items=items).save(tmp_path / "manifest.json")
    model = create_model("tiny_efficientnet", len(CLASSES), pretrained=False)
    meta = BundleMeta("tiny_efficientnet", list(CLASSES), [48, 64], [0.5] * 3, [0.5] * 3)
    bundle = save_bundle(model, meta, tmp_path / "m.safetensors")
    out = tmp_path / "calibrated.safetensors"
    assert main(["calibrate", str(bundle), "--manifest", str(manifest), "--out", str(out)]) == 0
    assert "temperature" in capsys.readouterr().out
    new = read_bundle_meta(out)
    summary = new.metrics["calibration"]
    assert new.temperature == pytest.approx(summary["temperature"]) and new.temperature != 1.0
    assert summary["images"] == 15 and summary["nll_after"] <= summary["nll_before"] + 1e-9
    assert read_bundle_meta(bundle).temperature == 1.0  # --out leaves the source alone
    assert main(["calibrate", str(bundle), "--manifest", str(manifest)]) == 0
    beside = tmp_path / "m.calibrated.safetensors"  # the default: a new file beside it
    assert read_bundle_meta(beside).temperature == new.temperature
    assert read_bundle_meta(bundle).temperature == 1.0
    same = ["calibrate", str(bundle), "--manifest", str(manifest), "--out", str(bundle)]
    assert main(same) == 2 and "never over the one it reads" in capsys.readouterr().err

    # the "not sure" rule: its bar refuses the asked share of the split, as the bin computes it
    ruled = tmp_path / "ruled.safetensors"
    args = ["calibrate", str(bundle), "--manifest", str(manifest), "--out", str(ruled)]
    assert main([*args, "--not-sure", "certainty@2", "--refuse", "0.2"]) == 0
    assert "'not sure': certainty at T=2 below" in capsys.readouterr().out
    card = read_bundle_meta(ruled)
    assert (card.not_sure_score, card.not_sure_temperature) == ("certainty", 2.0)
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.predict import predict_items
    from wastenet.models import load_bundle
    from wastenet.sureness import NotSureRule

    engine = TorchEngine.from_model(load_bundle(ruled)[0], card)
    sureness = NotSureRule.of(card).sureness(predict_items(engine, items).probs)
    refused = float((sureness < card.not_sure_below).mean())
    assert refused == pytest.approx(card.metrics["calibration"]["not_sure"]["refused"])
    assert 0.0 < refused <= 0.2 + 1e-9  # 3 of 15 at most: the quantile's own items
    assert main([*args, "--not-sure", "entropy"]) == 2
    assert "one of top_probability, certainty" in capsys.readouterr().err
    assert main([*args, "--refuse", "1.5"]) == 2
    assert "--refuse 1.5" in capsys.readouterr().err

    assert main(["calibrate", str(tmp_path / "nope.safetensors"), "--manifest", str(manifest)]) == 2
    assert "bundle" in capsys.readouterr().err

    for path in images.rglob("*.jpg"):
        path.unlink()
    assert main(["calibrate", str(bundle), "--manifest", str(manifest)]) == 2
    err = capsys.readouterr().err
    assert "none of the 15 val images could be read" in err and "Traceback" not in err
    assert read_bundle_meta(bundle).temperature == 1.0  # the bundle is left as it was


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
