"""Training: losses, a tiny model learns separable images, resume is exact, presets, LR finder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from wastenet.classes import CLASSES
from wastenet.cli import main as cli_main
from wastenet.data.manifest import load_manifest
from wastenet.errors import ConfigError
from wastenet.evaluate.metrics import score
from wastenet.train.config import load_train_config
from wastenet.train.loop import train
from wastenet.train.loss import labels_to_mask, set_label_loss
from wastenet.train.lr_find import suggest_lr


def test_set_label_loss_is_marginal_likelihood():
    logits = torch.tensor([[2.0, 0.5, -1.0, 1.0, 0.0]])
    pair = labels_to_mask([("paper", "cardboard")], CLASSES)
    probs = logits.softmax(1)[0]
    expected = -torch.log(probs[CLASSES.index("paper")] + probs[CLASSES.index("cardboard")])
    assert torch.allclose(set_label_loss(logits, pair), expected)
    single = labels_to_mask([("glass",)], CLASSES)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([1]))
    assert torch.allclose(set_label_loss(logits, single), ce)
    # a set label is never worse than either of its members alone
    card = labels_to_mask([("cardboard",)], CLASSES)
    assert set_label_loss(logits, pair) < set_label_loss(logits, card)
    assert score(logits.numpy(), pair.numpy()).hits[0]  # top-1 is cardboard, in the set


def test_label_smoothing_matches_torch_for_single_labels():
    logits = torch.randn(6, 5)
    target = torch.tensor([0, 1, 2, 3, 4, 0])
    mask = torch.nn.functional.one_hot(target, 5).bool()
    ref = torch.nn.functional.cross_entropy(logits, target, label_smoothing=0.1)
    assert torch.allclose(set_label_loss(logits, mask, 0.1), ref, atol=1e-6)


def test_tiny_model_learns_separable_images(tiny_manifest, tmp_path, monkeypatch):
    def no_file_reads(path):
        raise AssertionError(f"calibration read {path}; it should use the training cache")

    monkeypatch.setattr("wastenet.evaluate.dataset.read_rgb", no_file_reads)
    cfg = tiny_config(tiny_manifest, tmp_path)
    best = train(cfg, tmp_path / "run", progress=False)
    from wastenet.meta import read_bundle_meta

    meta = read_bundle_meta(tmp_path / "run" / "model.safetensors")
    assert best == tmp_path / "run" / "model.safetensors"  # the calibrated one, to export
    assert meta.temperature != 1.0 and (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "run" / "optimizer.safetensors").exists()  # a finished run drops it
    assert (tmp_path / "run" / "last.safetensors").exists()
    assert (tmp_path / "run" / "curves.png").exists()
    assert meta.metrics["val"]["acc"] >= 0.6  # chance is 0.2
    assert "test" in meta.metrics and meta.input_size == [48, 64]
    calibration = meta.metrics["calibration"]  # the shipped bundle comes out calibrated
    assert meta.temperature == calibration["temperature"] and calibration["split"] == "val"
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9


@pytest.mark.parametrize("stop_after, ema", [(3, None), (10, None), (10, 0.9)])
def test_interrupt_then_resume_is_exact(tiny_manifest, tmp_path, monkeypatch, stop_after, ema):
    """Stopped mid-epoch (3) or in the second epoch (10), the resumed run ends bit-equal
    (with an EMA of the weights too)."""
    phases = [{"name": "main", "epochs": 2, "lr": 1e-3}, {"name": "c", "epochs": 1, "lr": 1e-4}]
    cfg = tiny_config(tiny_manifest, tmp_path, phases=phases, ema_decay=ema)
    train(cfg, tmp_path / "full", progress=False)

    import wastenet.train.loop as loop

    calls = {"n": 0}
    original = loop._StopFlag.__enter__

    def enter(self):
        flag = original(self)
        real = type(flag)

        class Flag(real):  # asks to stop after the 3rd training step
            @property
            def requested(self):
                calls["n"] += 1
                return calls["n"] == stop_after

            @requested.setter
            def requested(self, value):
                pass

        flag.__class__ = Flag
        return flag

    monkeypatch.setattr(loop._StopFlag, "__enter__", enter)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()

    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    steps_per_epoch = -(-len(load_manifest(tiny_manifest).items(split="train")) // 8)
    assert state["epoch"] * steps_per_epoch + state["step"] == stop_after
    assert (tmp_path / "cut" / "optimizer.safetensors").exists()  # a stopped run keeps it
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    train(cfg, tmp_path / "cut", resume=True, progress=False)  # a finished run resumes to itself
    for name in ["last.safetensors", "model.safetensors"] + (["ema.safetensors"] if ema else []):
        a = load_file(str(tmp_path / "full" / name))
        b = load_file(str(tmp_path / "cut" / name))
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    if ema:  # the shipped weights are the average, not the last step's
        last, shipped = (
            load_file(str(tmp_path / "full" / n)) for n in ("last.safetensors", "ema.safetensors")
        )
        assert any(not torch.equal(last[k], shipped[k]) for k in last)


def test_existing_run_needs_resume_flag(tiny_manifest, tmp_path, capsys):
    """The run's own config (a real manifest, a model that needs no download) would train
    again: only the state check stops it from overwriting the run."""
    cfg = tiny_config(tiny_manifest, tmp_path, phases=[{"name": "m", "epochs": 1, "lr": 1e-3}])
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    capsys.readouterr()
    code = cli_main(["train", str(run / "config.yaml"), "--out", str(run), "--no-progress"])
    assert code == 2
    assert "a run is already there; pass --resume or another --out" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before  # nothing rewritten


def test_unknown_preset_and_bad_override_are_clear(capsys):
    assert cli_main(["train", "no_such_preset", "--out", "/tmp/x"]) == 2
    assert "unknown preset" in capsys.readouterr().err
    assert cli_main(["train", "lite0_mixed_75", "--out", "/tmp/x", "--set", "bogus=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_a_stage_preset_run_before_its_earlier_stage_says_how_to_make_it(
    tiny_manifest, tmp_path, monkeypatch, capsys
):
    """lite0_mixed_75_stage2/3 start from the previous stage's bundle, a path relative to
    the working directory: missing, one message names the preset, the file, the command
    that makes it and --set pretrained=PATH."""
    from wastenet.train.config import check_pretrained

    monkeypatch.chdir(tmp_path)  # not the repository root: no runs/ here
    for preset, earlier in [
        ("lite0_mixed_75_stage2", "lite0_mixed_75"),
        ("lite0_mixed_75_stage3", "lite0_mixed_75_stage2"),
    ]:
        out = ["--out", str(tmp_path / preset)]
        assert cli_main(["train", preset, "--set", f"manifest={tiny_manifest}", *out]) == 2
        err = capsys.readouterr().err
        bundle = f"runs/{earlier}/model.safetensors"
        make = f"wastenet train {earlier} --set manifest={tiny_manifest} --out runs/{earlier}"
        assert err.count("error:") == 1 and "Traceback" not in err
        assert preset in err and f"{bundle}, which does not exist" in err and str(tmp_path) in err
        assert make in err and "--set pretrained=PATH" in err
        assert not (tmp_path / preset).exists()  # checked before the run folder is made
        (tmp_path / preset).mkdir()  # a folder named like a preset does not hide it
        bundle_path = tmp_path / bundle
        bundle_path.parent.mkdir(parents=True)
        bundle_path.write_bytes(b"")  # once the earlier stage ran, the check lets it through
        check_pretrained(load_train_config(preset))
    lost = load_train_config("lite0_mixed_75", {"pretrained": str(tmp_path / "gone.safetensors")})
    with pytest.raises(ConfigError, match=r"gone.safetensors, which does not exist; train the run"):
        check_pretrained(lost)


def test_every_preset_loads():
    from wastenet.train.config import list_presets

    names = list_presets()
    assert {"densenet169_benchmark", "efficientnet_b0_75", "efficientnet_b0_mixed_75"} <= set(names)
    for name in names:
        cfg = load_train_config(name)
        assert cfg.batch_size == 16 or name.startswith("lite0")


def test_suggest_lr_finds_the_steep_part():
    lrs = list(np.logspace(-7, -1, 60))
    losses = [2.0 - 1.5 / (1 + np.exp(-(np.log10(lr) + 4) * 3)) for lr in lrs]
    losses[-5:] = [5, 8, 12, 20, 40]
    lr = suggest_lr(lrs, losses)
    assert 1e-5 < lr < 1e-3
