"""Training on several sources: loader workers, per-phase sources, source weights, backgrounds, outlier rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_image_folder, tiny_config
from wastenet.classes import CLASSES
from wastenet.data.manifest import load_manifest
from wastenet.data.split import build_split
from wastenet.errors import ConfigError
from wastenet.evaluate.metrics import score
from wastenet.train.loop import train
from wastenet.train.loss import set_label_loss


def test_loader_workers_auto_and_bad_values(tiny_manifest, tmp_path, monkeypatch):
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
