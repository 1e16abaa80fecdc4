"""Leave-one-source-out's parts without training: a source's scores, the summary over
folds, the fold plans and the narrowing of each stage to a fold's sources."""

from __future__ import annotations

import numpy as np
import pytest

from wastenet.classes import CLASSES
from wastenet.data.manifest import Item, Manifest
from wastenet.errors import ConfigError, WasteNetError
from wastenet.evaluate.shift_plan import (
    FoldPlan,
    id_sources,
    plan_existing,
    plan_folds,
    stage_configs,
)
from wastenet.evaluate.shift_report import mean_interval, source_scores, summarise
from wastenet.train.config import load_train_config


def test_source_scores_are_set_aware_with_an_interval():
    eye = np.eye(len(CLASSES))
    probs = np.stack([eye[CLASSES.index(c)] * 0.8 + 0.04 for c in ("paper", "glass", "metal")])
    labels = [("cardboard", "paper"), ("glass",), ("plastic",)]
    s = source_scores(probs, labels, threshold=0.9, ood_probs=np.full((2, 5), 0.2))
    assert s["top1_set_right"] == 2 and s["top1_set"] == pytest.approx(2 / 3)
    assert s["top1"] == pytest.approx(0.5)  # exact labels only: glass right, plastic wrong
    lo, hi = s["top1_set_ci95"]
    assert lo < 2 / 3 < hi
    assert s["recall"] == {"glass": 1.0, "plastic": 0.0}
    assert s["classes"] == ["cardboard", "glass", "paper", "plastic"]
    assert s["not_sure"]["not_sure_rate"] == 1.0  # 0.84 < 0.9
    assert s["ood"]["n"] == 2 and s["ood"]["not_sure_rate"] == 1.0
    assert "not_sure_at_refusals" not in s["ood"]  # no bar given
    # at the bar that refuses 5 % of the seen items: the OOD items under it, not the card's
    ood = np.array([[0.5, 0.2, 0.1, 0.1, 0.1], [0.3, 0.3, 0.2, 0.1, 0.1], [0.9, 0, 0, 0, 0.1]])
    s = source_scores(probs, labels, threshold=0.9, ood_probs=ood, refusal_bar=0.45)
    assert s["ood"]["not_sure_rate"] == pytest.approx(2 / 3)  # by the card: 0.5 and 0.3
    assert s["ood"]["not_sure_at_refusals"] == pytest.approx(1 / 3)  # by the bar: 0.3 only
    assert s["ood"]["refusals"] == 0.05 and s["ood"]["refusal_bar"] == 0.45


def test_summary_means_over_folds_and_holdout_apart():
    def scored(right, n, role):
        return {"role": role, "n": n, "top1_set_right": right, "top1_set": right / n,
                "top1": None, "not_sure": {"not_sure_rate": 0.5}, "ood": {"not_sure_rate": None}}  # fmt: skip

    folds = [
        {"scored": {"a": scored(9, 10, "left_out"), "h": scored(1, 2, "holdout")}},
        {"scored": {"b": scored(10, 30, "left_out"), "h": scored(2, 2, "holdout")}},
        {"scored": None},  # a fold without a model (--skip-train)
    ]
    s = summarise(folds)
    assert s["left_out"]["mean_top1_set"] == pytest.approx((0.9 + 1 / 3) / 2)
    assert s["left_out"]["pooled_top1_set"] == pytest.approx(19 / 40)
    lo, hi = s["left_out"]["pooled_top1_set_ci95"]
    assert lo < 19 / 40 < hi
    assert s["left_out"]["mean_top1"] is None and s["left_out"]["mean_not_sure"] == 0.5
    assert s["holdout"]["h"]["mean_top1_set"] == pytest.approx(0.75)
    assert s["holdout"]["h"]["n_scores"] == 2 and s["holdout_all"]["n_items"] == 4


def test_fold_plans_and_stage_narrowing():
    plans = plan_folds(["a", "b", "c", "h"], holdout_only=["h"])
    assert [(p.left_out, p.train_sources) for p in plans] == [
        (["a"], ["b", "c"]), (["b"], ["a", "c"]), (["c"], ["a", "b"])]  # fmt: skip
    assert [p.name for p in plan_folds(["a", "b", "c"], sources=["c", "a"])] == [
        "without-c", "without-a"]  # fmt: skip
    (only_b,) = plan_folds(["a", "b", "c", "h"], holdout_only=["h"], folds=["b"])
    assert (only_b.left_out, only_b.train_sources, only_b.holdout) == (["b"], ["a", "c"], ["h"])
    for folds in (["z"], ["h"]):  # not a source, or one no fold leaves out
        with pytest.raises(WasteNetError, match="--folds"):
            plan_folds(["a", "b", "c", "h"], holdout_only=["h"], folds=folds)
    for bad in ({"sources": ["a", "z"]}, {"holdout_only": ["z"]}, {"sources": ["a"]},
                {"sources": ["a", "b"], "holdout_only": ["b"]}):  # fmt: skip
        with pytest.raises(WasteNetError):
            plan_folds(["a", "b", "c"], **bad)
    assert plan_existing(["a", "b", "c"], ["a"]).left_out == ["b", "c"]
    with pytest.raises(WasteNetError, match="no unseen source"):
        plan_existing(["a", "b"], ["a", "b"])

    phases = [
        {"name": "main", "epochs": 1, "lr": 1e-3},
        {"name": "ab", "epochs": 1, "lr": 1e-4, "sources": ["a", "b"]},
        {"name": "a", "epochs": 1, "lr": 1e-4, "sources": ["a"]},
    ]
    one = load_train_config("lite0_mixed_75", {"phases": phases})
    only_a = load_train_config("lite0_mixed_75", {"phases": phases[2:]})
    fold = FoldPlan("without-a", ["a"], ["b", "c"])
    stages, dropped = stage_configs([("one", one), ("only_a", only_a)], fold)
    ((k, _, cfg),) = stages
    assert k == 1 and cfg.sources == ["b", "c"]
    assert [(p.name, p.sources) for p in cfg.phases] == [("main", None), ("ab", ["b"])]
    assert [(d["stage"], d["phase"]) for d in dropped] == [(1, "a"), (2, "a"), (2, None)]
    assert one.phases[2].sources == ["a"]  # the recipe itself is left as it was
    with pytest.raises(ConfigError, match="stage 1 would be dropped"):
        stage_configs([("only_a", only_a), ("one", one)], fold)


def test_mean_interval_of_independent_sources():
    scores = [{"top1_set": 0.5, "n": 400}, {"top1_set": 0.9, "n": 900}]
    lo, hi = mean_interval(scores)
    se = ((0.25 / 400 + 0.09 / 900) ** 0.5) / 2
    assert lo == pytest.approx(0.7 - 1.959964 * se) and hi == pytest.approx(0.7 + 1.959964 * se)
    assert mean_interval([]) is None


def test_a_train_only_source_is_refused_it_would_be_scored_on_a_models_labels():
    items = [
        Item(path=f"{s}/{i}.png", source=s, labels=("glass",), sha256=f"{s}{i}", split="train")
        for s in ("alpha", "beta", "bin-self")
        for i in range(2)
    ]
    sources = [{"name": "alpha"}, {"name": "beta"}, {"name": "bin-self", "train_only": True}]
    assert id_sources(Manifest(items, sources=sources[:2])) == ["alpha", "beta", "bin-self"]
    with pytest.raises(WasteNetError, match="bin-self: a train-only source"):
        id_sources(Manifest(items, sources=sources))
