"""Metrics and scoring on hand-made probability arrays with known answers."""

import numpy as np
import pytest

from wastenet.classes import CLASSES
from wastenet.evaluate import metrics as M
from wastenet.evaluate.scoring import score_predictions

C = {name: i for i, name in enumerate(CLASSES)}


def onehot_probs(pred_names, confidence=0.9):
    """Probabilities whose argmax is each named class, with the given top probability."""
    probs = np.full((len(pred_names), 5), (1 - confidence) / 4, np.float32)
    for i, name in enumerate(pred_names):
        probs[i, C[name]] = confidence
    return probs


def test_confusion_and_prf_known_values():
    # 3 cardboard: 2 right, 1 called paper; 2 paper: 1 right, 1 called cardboard; 1 glass right
    y_true = [C["cardboard"]] * 3 + [C["paper"]] * 2 + [C["glass"]]
    y_pred = [C["cardboard"], C["cardboard"], C["paper"], C["paper"], C["cardboard"], C["glass"]]
    cm = M.confusion_matrix(np.array(y_true), np.array(y_pred), 5)
    assert cm[C["cardboard"], C["cardboard"]] == 2
    assert cm[C["cardboard"], C["paper"]] == 1
    assert cm[C["paper"], C["cardboard"]] == 1
    assert cm.sum() == 6
    prf = M.per_class_prf(cm, CLASSES)
    # cardboard: precision 2/3 (3 predicted), recall 2/3
    assert prf["cardboard"]["precision"] == pytest.approx(2 / 3)
    assert prf["cardboard"]["recall"] == pytest.approx(2 / 3)
    # paper: precision 1/2, recall 1/2, F1 1/2
    assert prf["paper"]["f1"] == pytest.approx(0.5)
    assert prf["glass"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}
    # metal never appears or is predicted: zeros, not NaN, and left out of the macro mean
    assert prf["metal"]["precision"] == 0.0 and prf["metal"]["support"] == 0
    assert prf["macro_avg"]["f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert prf["weighted_avg"]["recall"] == pytest.approx(4 / 6)
    norm = M.normalize_rows(cm)
    assert norm[C["cardboard"]].sum() == pytest.approx(1.0)
    assert norm[C["metal"]].sum() == 0.0


def test_auroc_known_values():
    assert M.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert M.auroc([0.1, 0.2], [0.9, 0.8]) == 0.0
    assert M.auroc([0.5, 0.5], [0.5]) == 0.5  # ties count half
    # pos {0.9, 0.4}, neg {0.5, 0.1}: pairs won 0.9>0.5, 0.9>0.1, 0.4>0.1; lost 0.4<0.5 -> 3/4
    assert M.auroc([0.9, 0.4], [0.5, 0.1]) == pytest.approx(0.75)
    assert M.auroc([0.9], []) is None


def test_set_label_and_coarse_accuracy():
    pred = np.array([C["paper"], C["cardboard"], C["glass"], C["paper"]])
    labels = [
        ("cardboard", "paper"),
        ("cardboard", "paper"),
        ("cardboard", "paper"),
        ("cardboard",),
    ]
    assert M.score(pred, labels).hits.tolist() == [True, True, False, False]
    # with paper+cardboard merged, an exact cardboard called paper is right too
    assert M.coarse_correct(pred, labels).tolist() == [True, True, False, True]


def test_threshold_stats_not_sure_and_confident_accuracy():
    probs = np.array([[0.9, 0.1, 0, 0, 0], [0.5, 0.5, 0, 0, 0], [0.7, 0.3, 0, 0, 0]])
    correct = np.array([True, True, False])
    s = M.threshold_stats(probs, correct, threshold=0.6)
    assert s["not_sure_rate"] == pytest.approx(1 / 3)
    assert s["coverage"] == pytest.approx(2 / 3)
    assert s["accuracy_confident"] == pytest.approx(0.5)  # of the two confident, one right
    assert s["confident_error_rate"] == pytest.approx(1 / 3)
    assert M.threshold_stats(probs, correct, threshold=0.95)["coverage"] == 0.0


def test_score_predictions_per_source_sets_and_ood():
    preds = ["cardboard", "paper", "glass", "glass"] + ["paper", "cardboard", "plastic"]
    labels = [("cardboard",), ("cardboard",), ("glass",), ("glass",)] + [("cardboard", "paper")] * 3
    sources = ["trashnet"] * 4 + ["web-mixed"] * 3
    probs = onehot_probs(preds, 0.9)
    probs[3] = [0.1, 0.55, 0.2, 0.1, 0.05]  # glass, right but unsure (0.55 < 0.6)
    ood = onehot_probs(["plastic", "metal"], 0.5)  # low confidence on unknown items
    r = score_predictions(probs, labels, sources, threshold=0.6, ood_probs=ood)
    tn, web = r["per_source"]["trashnet"], r["per_source"]["web-mixed"]
    assert tn["top1"] == pytest.approx(3 / 4)  # cardboard, glass, glass right; paper wrong
    assert tn["coarse_accuracy"] == 1.0  # the paper-for-cardboard error forgiven
    assert tn["top1_ci95"] == pytest.approx(M.wilson_interval(3, 4))
    assert web["top1"] is None and web["n_set_label"] == 3 and web["top1_ci95"] is None
    assert web["set_accuracy"] == pytest.approx(2 / 3)
    assert r["overall"]["set_accuracy"] == pytest.approx(5 / 7)
    assert tn["not_sure"]["not_sure_rate"] == pytest.approx(1 / 4)
    # the set-label row of web-mixed's confusion matrix counts where its items went
    conf = web["confusion"]
    row = conf["rows"].index("cardboard|paper")
    assert conf["counts"][row] == [1, 0, 0, 1, 1]
    assert r["ood"]["not_sure_rate"] == 1.0
    assert r["ood"]["auroc"] == 1.0  # every ID max-prob (>=0.55) above OOD's 0.5
    assert r["ood"]["predicted_as"]["plastic"] == 1


def test_wilson_interval_bounds_a_small_splits_top1():
    assert M.wilson_interval(0, 0) is None
    lo, hi = M.wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)  # the textbook value
    lo, hi = M.wilson_interval(10, 10)
    assert hi == 1.0 and lo == pytest.approx(1 - 0.2775, abs=1e-4)
    lo, hi = M.wilson_interval(226, 238)  # the shipped model on TrashNet's test split
    assert lo < 226 / 238 < hi and hi - lo == pytest.approx(0.057, abs=0.001)
    wide, narrow = M.wilson_interval(45, 50), M.wilson_interval(900, 1000)
    assert wide[1] - wide[0] > 2 * (narrow[1] - narrow[0])  # more items, a tighter bound


def test_score_is_set_aware_per_class_and_per_source():
    # exact cardboard right, exact paper called cardboard, a set label hit, an outlier
    probs = onehot_probs(["cardboard", "cardboard", "paper", "plastic"])
    labels = [("cardboard",), ("paper",), ("cardboard", "paper"), ()]
    s = M.score(probs, labels, sources=["a", "a", "b", "b"])
    assert s.hits.tolist() == [True, False, True, False]  # an outlier is never right
    assert (s.n, s.right, s.accuracy) == (4, 2, 0.5)
    assert (s.n_exact, s.right_exact, s.exact_accuracy) == (2, 1, 0.5)
    assert s.per_class["cardboard"]["precision"] == 0.5 and s.per_class["paper"]["support"] == 1
    assert s.confusion.sum() == 2  # exactly-labelled items only
    assert {k: (v.n, v.right) for k, v in s.per_source.items()} == {"a": (2, 1), "b": (2, 1)}
    # class indices, or a bool mask per item, score the same
    masks = M.label_masks(labels)
    assert M.score(probs.argmax(1), masks).hits.tolist() == s.hits.tolist()
    empty = M.score(np.zeros((0, 5)), [])
    assert empty.n == 0 and empty.accuracy is None and empty.exact_accuracy is None
    with pytest.raises(ValueError):
        M.score(probs, labels[:3])
