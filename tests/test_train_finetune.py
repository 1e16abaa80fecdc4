"""wastenet finetune: the new-place recipe from a trained model, on sources added to it."""

from __future__ import annotations

import pytest
import yaml

from conftest import tiny_config
from wastenet.cli import main
from wastenet.data.manifest import load_manifest
from wastenet.meta import read_bundle_meta
from wastenet.train.finetune import fine_tune_config, operating_point
from wastenet.train.loop import train


@pytest.fixture(scope="module")
def alpha_model(two_source_manifest, tmp_path_factory):
    """A tiny model trained on source alpha only."""
    tmp = tmp_path_factory.mktemp("alpha")
    cfg = tiny_config(two_source_manifest, tmp, sources=["alpha"], not_sure_refuse=0.2,
                      not_sure_rule="certainty@2",
                      phases=[{"name": "main", "epochs": 1, "lr": 3e-3}])  # fmt: skip
    train(cfg, tmp / "run", progress=False)
    return tmp / "run" / "model.safetensors"


def test_finetune_adds_a_source_and_replays_the_old_ones(
    alpha_model, two_source_manifest, tmp_path, capsys
):
    out = tmp_path / "kitchen"
    args = ["finetune", str(alpha_model), "--manifest", str(two_source_manifest), "--add", "beta",
            "--out", str(out), "--epochs", "1", "--replay", "0.5", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"model: {out / 'model.safetensors'} (export this one)" in printed
    # the bin answers "not sure" as often after the update as before, on the same val items
    # (the old model's share on what it knew; the new bar on all it knows now)
    before, rule = operating_point(alpha_model, two_source_manifest, ["alpha"])
    assert rule == "certainty@2"  # the rule its training set
    n_val = len(load_manifest(two_source_manifest).items(split="val"))
    assert before == pytest.approx(0.2, abs=1 / n_val)  # the bar its training set (refuse 0.2)
    after, rule_after = operating_point(out / "model.safetensors", two_source_manifest,
                                        ["alpha", "beta"])  # fmt: skip
    assert rule_after == "certainty@2"  # kept, with its bar moved
    assert (
        f"answers 'not sure' (certainty@2) to {100 * before:.1f} % of the val items of alpha:"
        in printed
    )
    assert abs(after - before) <= 1 / n_val + 1e-9
    assert yaml.safe_load((out / "config.yaml").read_text())["not_sure_refuse"] == before
    meta = read_bundle_meta(out / "model.safetensors")
    assert meta.trained_sources == ["alpha", "beta"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["pretrained"] == str(alpha_model)
    assert config["source_weights"] == {"alpha": 0.5}  # the old source replayed, beta whole
    assert [p["name"] for p in config["phases"]] == ["main", "fixres"]
    # what it knew is kept: the old source distilled from the model it started from
    assert config["teachers"] == [str(alpha_model)] and config["distill_sources"] == ["alpha"]
    assert config["ood_weight"] == 0.0  # its recipe had no outlier exposure to keep
    # the recipe the model was trained with carries over (its size, its architecture)
    assert config["model"] == "tiny_efficientnet" and config["resolution_pct"] == 12.5


def test_the_curve_recipe_forgets_freely_and_the_default_keeps_outliers(
    alpha_model, two_source_manifest, tmp_path
):
    """A model trained with outlier exposure keeps it (at its weight) by default, beside
    the teacher; the new-place curve's recipe (keep_what_it_knows=False) has neither."""
    from dataclasses import replace

    from wastenet.models.bundle import load_bundle, save_bundle

    model, meta = load_bundle(alpha_model)
    meta.train_config = {**meta.train_config, "ood_weight": 0.1, "distill_weight": 0.8}
    exposed = save_bundle(model, meta, tmp_path / "exposed.safetensors")
    kept = fine_tune_config(exposed, two_source_manifest, ["beta"])
    assert kept.ood_weight == 0.1 and kept.distill_weight == 0.8
    assert kept.teachers == [str(exposed)] and kept.distill_sources == ["alpha"]
    free = fine_tune_config(exposed, two_source_manifest, ["beta"], keep_what_it_knows=False)
    assert free.teachers is None and free.distill_sources is None and free.ood_weight == 0.0
    assert replace(kept, teachers=None, distill_sources=None, ood_weight=0.0) == free


def test_finetune_refuses_what_it_cannot_use(alpha_model, two_source_manifest, tmp_path, capsys):
    from wastenet.errors import WasteNetError

    with pytest.raises(WasteNetError, match="starts from a .safetensors bundle"):
        fine_tune_config(tmp_path / "model.int8.xml", two_source_manifest, ["beta"])
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not an onnx file")
    assert main(["finetune", str(broken), "--manifest", str(two_source_manifest), "--add",
                 "beta", "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "model.onnx" in capsys.readouterr().err
    base = ["finetune", str(alpha_model), "--manifest", str(two_source_manifest), "--out",
            str(tmp_path / "x")]  # fmt: skip
    assert main([*base, "--add", "kitchen"]) == 2
    assert "--add kitchen: give sources of" in capsys.readouterr().err
    assert main([*base, "--add", "beta", "--replay", "0"]) == 2
    assert "--replay 0" in capsys.readouterr().err
    assert main(["finetune", str(alpha_model), "--out", str(tmp_path / "x")]) == 2
    assert "--manifest is required" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_an_exported_onnx_is_imported_exactly_and_fine_tuned(
    alpha_model, two_source_manifest, tmp_path, capsys
):
    """The bundled model ships as ONNX only: its folded weights come back into the
    architecture, batch norms measured on training images, predictions unchanged."""
    import numpy as np
    import torch

    from wastenet.data.manifest import load_manifest
    from wastenet.evaluate.dataset import load_images
    from wastenet.models.bundle import load_bundle
    from wastenet.preprocess import normalize
    from wastenet.train.finetune import weights_to_finetune

    assert main(["export", str(alpha_model), "--format", "onnx", "--out", str(tmp_path)]) == 0
    onnx_path = tmp_path / "model.onnx"
    imported = weights_to_finetune(onnx_path, two_source_manifest, tmp_path / "ft")
    assert imported == tmp_path / "ft" / "imported.safetensors"
    original, meta = load_bundle(alpha_model)
    again, meta2 = load_bundle(imported)
    assert meta2.trained_sources == ["alpha"] and meta2.temperature == meta.temperature
    items = load_manifest(two_source_manifest).items(split="test")
    images, _, _ = load_images(items, (meta.height, meta.width))
    x = torch.from_numpy(normalize(images, meta.mean, meta.std))
    with torch.no_grad():
        assert torch.allclose(original(x), again(x), atol=1e-4)
    bn = next(m for m in again.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.running_var.min() > 0 and torch.isfinite(bn.running_mean).all()

    args = ["finetune", str(onnx_path), "--manifest", str(two_source_manifest), "--add", "beta",
            "--out", str(tmp_path / "ft"), "--epochs", "1", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert read_bundle_meta(tmp_path / "ft" / "model.safetensors").trained_sources == [
        "alpha",
        "beta",
    ]
    assert np.isfinite(
        yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())["phases"][0]["lr"]
    )


def test_an_onnx_of_another_architecture_is_refused(
    flat_colour_model, two_source_manifest, tmp_path, capsys
):
    args = ["finetune", str(flat_colour_model), "--manifest", str(two_source_manifest), "--add",
            "beta", "--out", str(tmp_path / "ft")]  # fmt: skip
    assert main(args) == 2
    assert "architecture" in capsys.readouterr().err


def test_a_not_sure_rule_and_share_are_checked_before_training(two_source_manifest, tmp_path):
    from wastenet.errors import ConfigError

    cases = {
        "not_sure_refuse 1.0: a share in \\[0, 1\\)": {"not_sure_refuse": 1.0},
        "with calibrate on": {"not_sure_refuse": 0.1, "calibrate": False},
        "not_sure_rule needs not_sure_refuse": {"not_sure_rule": "certainty@2"},
        "not_sure_rule 'sureness@2': the score is one of": {
            "not_sure_rule": "sureness@2", "not_sure_refuse": 0.1},
    }  # fmt: skip
    for message, over in cases.items():
        with pytest.raises(ConfigError, match=message):
            tiny_config(two_source_manifest, tmp_path, **over)
