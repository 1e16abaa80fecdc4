"""The improvement loop end to end, every step a real command: a bin keeps what it sees,
its sure answers become a train-only source, the model is fine-tuned on it, exported,
gated against the one in service, published signed, pulled by the bin and run."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import make_image_folder, tiny_config
from wastenet.cli import main
from wastenet.data.manifest import load_manifest
from wastenet.train.loop import train

pytest.importorskip("onnx")
pytest.importorskip("cryptography")


def run(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def test_store_self_label_finetune_gate_publish_pull_run(tmp_path, capsys):
    shop = make_image_folder(tmp_path / "shop", per_class=10, seed=0)
    run("data", "split", shop, "--out", tmp_path / "data")
    manifest = tmp_path / "data" / "manifest.json"
    train(tiny_config(manifest, tmp_path, phases=[{"name": "main", "epochs": 2, "lr": 3e-3}]),
          tmp_path / "v1", progress=False)  # fmt: skip
    run("export", tmp_path / "v1" / "model.safetensors", "--format", "onnx")
    in_service = tmp_path / "v1" / "model.onnx"

    # the bin, in its own place: frames it has never seen, every one kept
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in make_image_folder(tmp_path / "place", per_class=4, seed=900).rglob("*.jpg"):
        shutil.copy(path, frames / f"{path.parent.name}_{path.name}")
    # a tiny model is sure of little, and how little varies with the CPU's arithmetic: the
    # bin answers every frame (--threshold 0) and every answer is self-labelled (the top
    # probability of five classes is at least 0.2)
    store = tmp_path / "store"
    run("run", "--model", in_service, "--source", frames, "--store", store, "--store-policy",
        "all", "--threshold", "0", "--actuator", "sim://", "--run-dir", tmp_path / "bin-run")  # fmt: skip
    run("samples", "export", store, "--self-label", "0.2", "--out", tmp_path / "bin-self")
    run("data", "split", shop, tmp_path / "bin-self" / "source.yaml",
        "--keep-splits-from", manifest, "--out", tmp_path / "data2")  # fmt: skip
    manifest2 = load_manifest(tmp_path / "data2" / "manifest.json")
    guessed = manifest2.items(source="bin-store-self-labelled")
    assert guessed and {it.split for it in guessed} == {"train"}

    run("finetune", tmp_path / "v1" / "model.safetensors", "--manifest",
        tmp_path / "data2" / "manifest.json", "--add", "bin-store-self-labelled",
        "--out", tmp_path / "v2", "--epochs", "1", "--no-progress")  # fmt: skip
    run("export", tmp_path / "v2" / "model.safetensors", "--format", "onnx")
    candidate = tmp_path / "v2" / "model.onnx"
    # a tiny model's gate is noise: a wide tolerance lets it through, the wiring is the test
    run("gate", in_service, candidate, "--manifest", tmp_path / "data2" / "manifest.json",
        "--tolerance", "100", "--out", tmp_path / "gate.json")  # fmt: skip
    assert json.loads((tmp_path / "gate.json").read_text())["passed"]

    run("update", "keygen", "--out", tmp_path / "keys")
    run("update", "publish", candidate, "--gate", tmp_path / "gate.json", "--key",
        tmp_path / "keys" / "update.key", "--channel", tmp_path / "channel", "--version", "v2")  # fmt: skip
    run("update", "pull", (tmp_path / "channel").as_uri(), "--key",
        tmp_path / "keys" / "update.pub", "--dir", tmp_path / "bin")  # fmt: skip
    current = tmp_path / "bin" / "current"
    assert (current / "model.onnx").read_bytes() == candidate.read_bytes()
    capsys.readouterr()
    run("run", "--model", current, "--source", frames, "--max-frames", "4", "--actuator",
        "sim://", "--run-dir", tmp_path / "bin-run2")  # fmt: skip
    assert "engine: model.onnx" in capsys.readouterr().out
