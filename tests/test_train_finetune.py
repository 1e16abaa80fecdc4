"""wastenet finetune: the new-place recipe from a trained model, on sources added to it."""

from __future__ import annotations

import pytest
import yaml

from conftest import tiny_config
from wastenet.cli import main
from wastenet.meta import read_bundle_meta
from wastenet.train.finetune import fine_tune_config
from wastenet.train.loop import train


@pytest.fixture(scope="module")
def alpha_model(two_source_manifest, tmp_path_factory):
    """A tiny model trained on source alpha only."""
    tmp = tmp_path_factory.mktemp("alpha")
    cfg = tiny_config(two_source_manifest, tmp, sources=["alpha"],
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
    assert "best model" in capsys.readouterr().out
    meta = read_bundle_meta(out / "model.safetensors")
    assert meta.trained_sources == ["alpha", "beta"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["pretrained"] == str(alpha_model)
    assert config["source_weights"] == {"alpha": 0.5}  # the old source replayed, beta whole
    assert [p["name"] for p in config["phases"]] == ["main", "fixres"]
    assert config["ood_weight"] == 0.0 and config["teachers"] is None
    # the recipe the model was trained with carries over (its size, its architecture)
    assert config["model"] == "tiny_efficientnet" and config["resolution_pct"] == 12.5


def test_finetune_refuses_what_it_cannot_use(alpha_model, two_source_manifest, tmp_path, capsys):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"not read")
    with pytest.raises(Exception, match="needs the model's weights"):
        fine_tune_config(onnx, two_source_manifest, ["beta"])
    base = ["finetune", str(alpha_model), "--manifest", str(two_source_manifest), "--out",
            str(tmp_path / "x")]  # fmt: skip
    assert main([*base, "--add", "kitchen"]) == 2
    assert "--add kitchen: give sources of" in capsys.readouterr().err
    assert main([*base, "--add", "beta", "--replay", "0"]) == 2
    assert "--replay 0" in capsys.readouterr().err
    assert main(["finetune", str(alpha_model), "--out", str(tmp_path / "x")]) == 2
    assert "--manifest is required" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
