"""Training: a tiny model learns separable images, resume is exact, set labels, DDP."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main as cli_main
from wastenet.data.manifest import load_manifest
from wastenet.data.split import build_split
from wastenet.errors import ConfigError
from wastenet.evaluate.metrics import score
from wastenet.train.config import load_train_config
from wastenet.train.loop import train
from wastenet.train.loss import labels_to_mask, set_label_loss
from wastenet.train.lr_find import suggest_lr


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> Path:
    root = make_image_folder(tmp_path_factory.mktemp("imgs"), per_class=16, size_wh=(64, 48))
    out = tmp_path_factory.mktemp("split") / "manifest.json"
    build_split([root], progress=False).manifest.save(out)
    return out


def tiny_config(manifest: Path, tmp: Path, **over):
    data = {
        "manifest": str(manifest),
        "model": "tiny_efficientnet",
        "pretrained": False,
        "resolution_pct": 12.5,  # 48x64
        "batch_size": 8,
        "cache_dir": str(tmp / "cache"),
        "augment": {"preset": "table3"},
        "freeze_stem_blocks": 0,
        "label_smoothing": 0.0,
        "schedule": "constant",
        "phases": [
            {"name": "main", "epochs": 4, "lr": 3e-3},
            {"name": "consolidation", "epochs": 1, "lr": 3e-4},
        ],
    }
    data.update(over)
    return load_train_config("lite0_mixed_75", data)


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
    assert best.exists() and (tmp_path / "run" / "metrics.csv").exists()
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
    import json

    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    steps_per_epoch = -(-len(build_split_items(tiny_manifest)) // 8)
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


def build_split_items(manifest: Path) -> list:
    from wastenet.data.manifest import load_manifest

    return load_manifest(manifest).items(split="train")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Two gloo ranks on this CPU, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = str(_free_port())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", port, *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tiny_manifest, tmp_path):
    """The torchrun path: two gloo ranks train the same model; rank 0 writes the run."""
    cfg_path = tmp_path / "cfg.yaml"
    from wastenet.config import save_yaml

    save_yaml(
        tiny_config(tiny_manifest, tmp_path, phases=[{"name": "m", "epochs": 1, "lr": 1e-3}]),
        cfg_path,
    )
    args = ["-m", "wastenet.cli", "train", str(cfg_path), "--out", str(tmp_path / "ddp")]
    done = _torchrun(*args, "--no-progress")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (tmp_path / "ddp" / "model.safetensors").exists()


# Trains like `wastenet train`, and saves each rank's parameters after every epoch.
DDP_DRIVER = """
import sys
from pathlib import Path

from safetensors.torch import save_file

from wastenet.train import loop
from wastenet.train.config import load_train_config


def save_each_rank(ctx, pos, optimizer, save=loop._save_progress):
    save(ctx, pos, optimizer)
    params = {k: p.detach().cpu().contiguous() for k, p in ctx.model_core.named_parameters()}
    name = f"rank{ctx.rank}_epoch{pos.global_epoch}.safetensors"
    save_file(params, str(Path(sys.argv[2]) / name))


loop._save_progress = save_each_rank
loop.train(load_train_config(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_ddp_with_frozen_layers_and_a_phase_that_unfreezes(tiny_manifest, tmp_path):
    """Every Lite preset freezes: ``freeze_stem_blocks`` throughout, and here a frozen-
    backbone phase, then a phase that trains the rest. DDP hooks the parameters that need
    a gradient when it wraps: wrapped before freezing, the reducer waits for gradients
    that never come (a crash); wrapped once after, the blocks the second phase unfreezes
    are never averaged (the ranks drift apart). Both ranks must hold the same weights."""
    from wastenet.config import save_yaml
    from wastenet.models import create_model
    from wastenet.train.freeze import backbone_units

    phases = [
        {"name": "head", "epochs": 1, "lr": 3e-3, "freeze": "backbone"},
        {"name": "all", "epochs": 1, "lr": 1e-3},
    ]
    cfg = tiny_config(tiny_manifest, tmp_path, phases=phases, freeze_stem_blocks=2, calibrate=False)
    save_yaml(cfg, tmp_path / "cfg.yaml")
    (tmp_path / "driver.py").write_text(DDP_DRIVER)
    out = tmp_path / "ddp"
    done = _torchrun(str(tmp_path / "driver.py"), str(tmp_path / "cfg.yaml"), str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (out / "model.safetensors").exists()
    torch.manual_seed(cfg.seed)  # the run's starting weights
    model = create_model(cfg.model, len(CLASSES), pretrained=False)
    start = {k: p.detach() for k, p in model.named_parameters()}
    units = backbone_units(model)
    names = {id(p): k for k, p in model.named_parameters()}
    stem = {names[id(p)] for unit in units[:2] for p in unit.parameters()}
    backbone = {names[id(p)] for unit in units for p in unit.parameters()}
    head = set(start) - backbone
    epochs = [{r: load_file(str(out / f"rank{r}_epoch{e}.safetensors")) for r in (0, 1)}
              for e in (1, 2)]  # fmt: skip
    for e, ranks in enumerate(epochs, 1):
        for key in start:
            assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks differ: {key}, epoch {e}"
    after_head, after_all = epochs[0][0], epochs[1][0]
    assert all(torch.equal(after_head[k], start[k]) for k in backbone)  # frozen
    assert all(not torch.equal(after_head[k], start[k]) for k in head)  # trained
    assert all(torch.equal(after_all[k], start[k]) for k in stem)  # frozen throughout
    assert all(not torch.equal(after_all[k], after_head[k]) for k in backbone - stem)


def test_distill_loss_is_temperature_scaled_kl():
    from wastenet.train.distill import distill_loss

    torch.manual_seed(0)
    teacher_logits, student = torch.randn(4, 5), torch.randn(4, 5, requires_grad=True)
    soft = torch.softmax(teacher_logits / 2.0, dim=1)
    same = distill_loss(teacher_logits, soft, 2.0)
    assert same.shape == (4,) and float(same.abs().max()) == pytest.approx(0.0, abs=1e-6)
    log_s = torch.log_softmax(student / 2.0, dim=1)
    manual = 4.0 * (soft * (soft.log() - log_s)).sum(1)  # per row
    loss = distill_loss(student, soft, 2.0)
    assert torch.allclose(loss, manual) and bool((loss.detach() > 0).all())
    loss.mean().backward()
    with torch.no_grad():  # one gradient step moves the student towards the teacher
        assert distill_loss(student - 0.5 * student.grad, soft, 2.0).mean() < loss.mean()


def test_student_learns_from_a_teacher_alone(tiny_manifest, tmp_path):
    """distill_weight 1: no label term at all, yet the student learns the classes."""
    teacher = train(tiny_config(tiny_manifest, tmp_path), tmp_path / "teacher", progress=False)
    phases = [{"name": "main", "epochs": 4, "lr": 3e-3}]
    cfg = tiny_config(
        tiny_manifest, tmp_path, phases=phases, teachers=[str(teacher)], distill_weight=1.0,
        seed=1, calibrate=False,
    )  # fmt: skip
    train(cfg, tmp_path / "student", progress=False)
    from wastenet.meta import read_bundle_meta

    student = read_bundle_meta(tmp_path / "student" / "model.safetensors").metrics
    assert student["val"]["acc"] >= 0.6  # chance is 0.2


def test_an_exported_teacher_teaches_what_its_bundle_does(tiny_manifest, tmp_path):
    """A shipped ONNX (calibrated softmax inside) gives the soft labels of its bundle."""
    from wastenet.accelerate.onnx_export import export_onnx
    from wastenet.models import load_bundle
    from wastenet.train.distill import Teachers

    bundle = train(tiny_config(tiny_manifest, tmp_path), tmp_path / "teacher", progress=False)
    model, meta = load_bundle(bundle)
    calibrated = dataclasses.replace(meta, temperature=0.7)  # the artifact's softmax divides by it
    onnx = export_onnx(model.eval(), calibrated, tmp_path / "teacher.onnx")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 48, 64, 3), np.uint8))
    from_bundle = Teachers([str(bundle)], 2.0, torch.device("cpu"))
    from_onnx = Teachers([str(onnx)], 2.0, torch.device("cpu"))
    expected = from_bundle.probs(images, contextlib.nullcontext)
    got = from_onnx.probs(images, contextlib.nullcontext)
    assert torch.allclose(got, expected, atol=1e-4)
    from_onnx.close()


def test_distill_sources_limit_the_teaching(two_source_manifest, tmp_path):
    """Teaching only ``beta`` with distill_weight 1 leaves ``alpha``'s rows their labels:
    a teacher that teaches no training source changes nothing at all."""
    from wastenet.errors import ConfigError
    from wastenet.train.loop import taught_rows

    teacher = train(tiny_config(two_source_manifest, tmp_path), tmp_path / "t", progress=False)
    plain = dict(sources=["alpha"], seed=3, calibrate=False)
    alone = train(tiny_config(two_source_manifest, tmp_path, **plain), tmp_path / "alone",
                  progress=False)  # fmt: skip
    untaught = tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                           distill_weight=1.0, distill_sources=["beta"], **plain)  # fmt: skip
    same = train(untaught, tmp_path / "untaught", progress=False)
    a, b = load_file(alone), load_file(same)
    assert all(torch.equal(a[k], b[k]) for k in a)
    taught = tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                         distill_weight=1.0, distill_sources=["alpha"], **plain)  # fmt: skip
    c = load_file(train(taught, tmp_path / "taught", progress=False))
    assert not all(torch.equal(a[k], c[k]) for k in a)

    class Two:
        def item(self, r):
            return type("It", (), {"source": ["alpha", "beta"][r % 2]})()

    assert taught_rows(Two(), [0, 1, 2], ["beta"], "cpu").tolist() == [0.0, 1.0, 0.0]
    assert taught_rows(Two(), [0, 1], None, "cpu").tolist() == [1.0, 1.0]
    with pytest.raises(ConfigError, match="distill_sources needs teachers"):
        tiny_config(two_source_manifest, tmp_path, distill_sources=["alpha"])
    with pytest.raises(ConfigError, match="distill_sources"):
        train(tiny_config(two_source_manifest, tmp_path, teachers=[str(teacher)],
                          distill_sources=["gamma"]), tmp_path / "bad")  # fmt: skip


def test_bad_teachers_and_distill_settings_are_clear(tiny_manifest, tmp_path):
    from wastenet.errors import ConfigError
    from wastenet.meta import BundleMeta
    from wastenet.models import create_model, save_bundle

    with pytest.raises(ConfigError, match="no such bundle"):
        train(tiny_config(tiny_manifest, tmp_path, teachers=["absent.safetensors"]), tmp_path / "a")
    other = tmp_path / "other.safetensors"
    labels = ["a", "b", "c", "d", "e"]
    save_bundle(create_model("tiny_efficientnet", 5, pretrained=False),
                BundleMeta("tiny_efficientnet", labels, [48, 64], [0.5] * 3, [0.5] * 3), other)  # fmt: skip
    with pytest.raises(ConfigError, match="classes"):
        train(tiny_config(tiny_manifest, tmp_path, teachers=[str(other)]), tmp_path / "b")
    with pytest.raises(ConfigError, match="distill_weight"):
        tiny_config(tiny_manifest, tmp_path, distill_weight=1.5)


def test_loader_workers_auto_and_bad_values(tiny_manifest, tmp_path, monkeypatch):
    from wastenet.errors import ConfigError
    from wastenet.train.setup import loader_workers

    assert tiny_config(tiny_manifest, tmp_path).workers == "auto"  # the default
    assert tiny_config(tiny_manifest, tmp_path, workers=3).workers == 3
    for bad in ("many", -1, True):
        with pytest.raises(ConfigError, match="workers"):
            tiny_config(tiny_manifest, tmp_path, workers=bad)
    assert loader_workers("auto", cuda=False) == 0  # a CPU's cores train the model
    assert loader_workers(5, cuda=False) == 5
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert loader_workers("auto", cuda=True) == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # four GPU processes share 16 cores
    assert loader_workers("auto", cuda=True) == 3
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
    assert loader_workers("auto", cuda=True) == 1


def test_a_phase_can_train_on_some_sources_while_val_keeps_them_all(two_source_manifest, tmp_path):
    """``phases[i].sources``: the last epochs on one source, validation over the run's."""
    from wastenet.errors import ConfigError
    from wastenet.train.setup import RunContext

    manifest = two_source_manifest
    phases = [
        {"name": "main", "epochs": 1, "lr": 3e-3},
        {"name": "alpha_only", "epochs": 1, "lr": 3e-4, "sources": ["alpha"]},
    ]
    cfg = tiny_config(manifest, tmp_path, phases=phases, calibrate=False)
    ctx = RunContext(cfg, tmp_path / "ctx", progress=False)
    mixed, alpha = ctx.train_data(cfg.phases[0]), ctx.train_data(cfg.phases[1])
    assert {it.source for it in mixed.items} == {"alpha", "beta"}
    assert {it.source for it in alpha.items} == {"alpha"}
    assert 0 < len(alpha) < len(mixed)
    assert {it.source for it in ctx.val_data().items} == {"alpha", "beta"}
    ctx.close()
    train(cfg, tmp_path / "run", progress=False)
    header = (tmp_path / "run" / "metrics.csv").read_text().splitlines()[0]
    assert "val_acc_alpha" in header and "val_acc_beta" in header
    with pytest.raises(ConfigError, match="not among the run's sources"):
        tiny_config(manifest, tmp_path, sources=["beta"], phases=phases)
    with pytest.raises(ConfigError, match="at least one source"):
        tiny_config(manifest, tmp_path, phases=[{**phases[1], "sources": []}])


def test_source_weights_draw_each_source_that_often(two_source_manifest, tmp_path):
    """{alpha: 2, beta: 0.5}: every alpha image twice per epoch, with its own augmentation
    draw each time, and the same half of beta once; val and test are not weighted."""
    from collections import Counter

    from wastenet.errors import ConfigError
    from wastenet.train.setup import RunContext

    weights = {"alpha": 2, "beta": 0.5}
    cfg = tiny_config(two_source_manifest, tmp_path, source_weights=weights, calibrate=False)
    ctx = RunContext(cfg, tmp_path / "ctx", progress=False)
    data = ctx.train_data(cfg.phases[0])
    counts = Counter(data.rows.tolist())
    alpha = [i for i, it in enumerate(data.items) if it.source == "alpha"]
    beta = [i for i, it in enumerate(data.items) if it.source == "beta"]
    assert all(counts[i] == 2 for i in alpha)
    half = round(len(beta) / 2)
    assert sorted(counts[i] for i in beta) == [0] * (len(beta) - half) + [1] * half
    assert len(data) == 2 * len(alpha) + half
    twice = [k for k, row in enumerate(data.rows) if row == alpha[0]]
    data.epoch, data.mode = 0, "train"
    first, second = (data[k][0].numpy() for k in twice)
    assert not np.array_equal(first, second)  # two samples, two augmentations
    assert len(ctx.val_data()) == len(ctx.val_data().items)
    ctx.close()
    with pytest.raises(ConfigError, match="source_weights"):
        tiny_config(two_source_manifest, tmp_path, source_weights={"alpha": 0})
    bad = tiny_config(two_source_manifest, tmp_path, source_weights={"gamma": 2})
    with pytest.raises(ConfigError, match="gamma"):  # checked once, when the run loads
        RunContext(bad, tmp_path / "bad", progress=False)


def test_backgrounds_come_from_the_runs_training_sources_only(two_source_manifest, tmp_path):
    """``backgrounds: {source: folder}``: a run pastes onto its own sources' backgrounds,
    so a fold that leaves a source out never sees that source's floors."""
    from PIL import Image

    from wastenet.errors import ConfigError
    from wastenet.train.setup import RunContext

    folders = {}
    for name, colour in (("alpha", (255, 0, 0)), ("beta", (0, 0, 255))):
        folders[name] = tmp_path / f"bg_{name}"
        folders[name].mkdir()
        Image.new("RGB", (64, 48), colour).save(folders[name] / "floor.jpg")
    backgrounds = {k: str(v) for k, v in folders.items()}
    cfg = tiny_config(
        two_source_manifest, tmp_path, sources=["alpha"], backgrounds=backgrounds, calibrate=False
    )
    ctx = RunContext(cfg, tmp_path / "ctx", progress=False)
    assert ctx._augment.cfg.background_dir == [backgrounds["alpha"]]
    ctx.close()
    both = tiny_config(two_source_manifest, tmp_path, backgrounds=backgrounds, calibrate=False)
    ctx = RunContext(both, tmp_path / "ctx2", progress=False)
    assert sorted(ctx._augment.cfg.background_dir) == sorted(backgrounds.values())
    ctx.close()
    bad = tiny_config(two_source_manifest, tmp_path, backgrounds={"gamma": str(tmp_path)})
    with pytest.raises(ConfigError, match="gamma"):
        RunContext(bad, tmp_path / "bad", progress=False)


def test_outlier_rows_are_pushed_toward_uniform():
    """An empty label set is an out-of-distribution item: its loss is the cross-entropy to
    the uniform distribution (x ood_weight); labelled rows keep the set-label loss."""
    import torch

    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0], [3.0, -1.0, 0.5, 0.0, 1.0]])
    mask = torch.tensor([[True, False, False, False, False], [False] * 5])
    log_p = torch.log_softmax(logits, dim=1)
    want_id, want_ood = -log_p[0, 0], -log_p[1].mean()
    got = set_label_loss(logits, mask, ood_weight=0.5)
    assert torch.allclose(got, (want_id + 0.5 * want_ood) / 2)
    flat = torch.zeros(1, 5, requires_grad=True)
    loss = set_label_loss(flat, torch.zeros(1, 5, dtype=torch.bool))
    loss.backward()
    assert torch.allclose(loss, torch.log(torch.tensor(5.0)))  # the minimum: log K
    assert torch.allclose(flat.grad, torch.zeros(1, 5), atol=1e-6)  # uniform already
    assert not score(logits.numpy(), mask.numpy()).hits[1]  # an outlier is never right


def test_ood_weight_adds_the_training_sources_outliers(tmp_path_factory, tmp_path):
    from wastenet.errors import ConfigError
    from wastenet.train.setup import RunContext

    tmp = tmp_path_factory.mktemp("ood_sources")
    alpha = make_image_folder(tmp / "alpha", per_class=6, seed=0, classes=[*CLASSES, "trash"])
    beta = make_image_folder(tmp / "beta", per_class=6, seed=700, classes=[*CLASSES, "trash"])
    manifest = tmp / "manifest.json"
    build_split([alpha, beta], progress=False).manifest.save(manifest)
    cfg = tiny_config(manifest, tmp_path, sources=["alpha"], ood_weight=0.5, calibrate=False)
    ctx = RunContext(cfg, tmp_path / "ctx", progress=False)
    data = ctx.train_data(cfg.phases[0])
    outliers = [it for it in data.items if not it.labels]
    # Only the outliers whose photo groups fell in the train split (4 of alpha's 6):
    # the others stay unseen, for scoring "not sure".
    m = load_manifest(manifest)
    assert sorted(it.path for it in outliers) == sorted(
        it.path for it in m.ood_items(training=True, source="alpha")
    )
    assert len(outliers) == 4 and {it.ood_split for it in outliers} == {"train"}
    assert {it.ood_split for it in m.ood_items(training=False, source="alpha")} == {"val", "test"}
    assert not data.masks[[i for i, it in enumerate(data.items) if not it.labels]].any()
    ctx.close()
    # A manifest made before outliers had a split cannot say which are safe to train on.
    old = json.loads(manifest.read_text())
    for d in old["ood"]:
        del d["ood_split"]
    del old["hash"]
    older = tmp / "older.json"
    older.write_text(json.dumps(old))
    ctx = RunContext(
        tiny_config(older, tmp_path, ood_weight=0.5), tmp_path / "ctx2", progress=False
    )
    with pytest.raises(ConfigError, match="before out-of-distribution items had a split"):
        ctx.train_data(cfg.phases[0])
    ctx.close()
    train(tiny_config(manifest, tmp_path, ood_weight=0.5, calibrate=False), tmp_path / "run",
          progress=False)  # fmt: skip
    with pytest.raises(ConfigError, match="ood_weight"):
        tiny_config(manifest, tmp_path, ood_weight=-1)
    # ood_sources: both sources train, only beta's outliers are exposed
    cfg = tiny_config(manifest, tmp_path, ood_weight=0.5, ood_sources=["beta"], calibrate=False)
    ctx = RunContext(cfg, tmp_path / "ctx3", progress=False)
    outliers = [it for it in ctx.train_data(cfg.phases[0]).items if not it.labels]
    assert {it.source for it in outliers} == {"beta"} and len(outliers) == 4
    assert {it.source for it in ctx.train_data(cfg.phases[0]).items if it.labels} == {
        "alpha", "beta"}  # fmt: skip
    ctx.close()
    with pytest.raises(ConfigError, match="ood_sources needs ood_weight"):
        tiny_config(manifest, tmp_path, ood_sources=["beta"])
    with pytest.raises(ConfigError, match="ood_sources"):
        RunContext(tiny_config(manifest, tmp_path, ood_weight=0.5, ood_sources=["gamma"]),
                   tmp_path / "ctx4", progress=False)  # fmt: skip
