"""From predicted probabilities and labels to every number in the report (numpy only)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wastenet.classes import CLASSES, CONFIDENCE_THRESHOLD
from wastenet.evaluate import metrics as M
from wastenet.evaluate.temperature import expected_calibration_error
from wastenet.sureness import DEFAULT_REFUSALS, NotSureRule, as_rule


def row_name(labels: Sequence[str], classes=CLASSES) -> str:
    """A confusion row: the class for an exact label, 'a|b' for a set label."""
    ordered = [c for c in classes if c in labels]
    return "|".join(ordered)


def _confusion(pred: np.ndarray, label_sets: Sequence[tuple[str, ...]], classes) -> dict:
    """Rows: every class, then each set label present ('cardboard|paper'); columns: classes."""
    set_rows = sorted({row_name(ls, classes) for ls in label_sets if len(ls) > 1})
    rows = list(classes) + set_rows
    index = {r: i for i, r in enumerate(rows)}
    counts = np.zeros((len(rows), len(classes)), np.int64)
    for p, ls in zip(pred, label_sets, strict=True):
        counts[index[row_name(ls, classes)], int(p)] += 1
    return {
        "rows": rows,
        "columns": list(classes),
        "counts": counts.tolist(),
        "normalized": np.round(M.normalize_rows(counts), 4).tolist(),
    }


def score_group(
    probs: np.ndarray,
    label_sets: Sequence[tuple[str, ...]],
    threshold: NotSureRule | float,
    classes: Sequence[str] = CLASSES,
    merge=M.DEFAULT_MERGE,
) -> dict:
    """Top-1 (exact labels), set accuracy, coarse accuracy, P/R/F1, confusion, not-sure."""
    probs = np.asarray(probs, np.float64)
    label_sets = [tuple(ls) for ls in label_sets]
    s = M.score(probs, label_sets, classes)
    pred, in_set, exact = s.pred, s.hits, s.exact
    return {
        "n": s.n,
        "n_exact": s.n_exact,
        "n_set_label": s.n - s.n_exact,
        # top-1 over the exactly-labelled items: the paper's test-set accuracy
        "top1": s.exact_accuracy,
        "top1_ci95": M.wilson_interval(s.right_exact, s.n_exact),
        # a set label counts as right when the prediction is in it ("coarse-label accuracy")
        "set_accuracy": s.accuracy,
        "set_label_accuracy": M.mean_or_none(in_set[~exact]),
        # paper and cardboard merged, for every item
        "coarse_accuracy": M.mean_or_none(M.coarse_correct(pred, label_sets, merge, classes)),
        "per_class": s.per_class,
        "confusion": _confusion(pred, label_sets, classes),
        "not_sure": M.threshold_stats(probs, in_set, threshold),
        "ece": expected_calibration_error(probs, s.masks),
    }


def score_predictions(
    probs: np.ndarray,
    label_sets: Sequence[tuple[str, ...]],
    sources: Sequence[str],
    threshold: NotSureRule | float = CONFIDENCE_THRESHOLD,
    ood_probs: np.ndarray | None = None,
    classes: Sequence[str] = CLASSES,
) -> dict:
    """The whole test split, each source on its own, and in- vs out-of-distribution;
    ``threshold`` is the card's "not sure" rule (a bare number: top probability)."""
    threshold = as_rule(threshold)
    probs = np.asarray(probs, np.float64)
    sources = list(sources)
    result = {
        "classes": list(classes),
        "threshold": threshold.threshold,
        "not_sure_rule": threshold.describe(),
        "overall": score_group(probs, label_sets, threshold, classes),
        "per_source": {},
    }
    for source in sorted(set(sources)):
        sel = [i for i, s in enumerate(sources) if s == source]
        result["per_source"][source] = score_group(
            probs[sel], [label_sets[i] for i in sel], threshold, classes
        )
    result["ood"] = score_ood(probs, ood_probs, threshold)
    return result


def score_ood(
    id_probs: np.ndarray,
    ood_probs: np.ndarray | None,
    threshold: NotSureRule | float,
    refusal_bar: float | None = None,
) -> dict:
    """How well "not sure" separates unknown items (TrashNet ``trash``) from known ones.

    ``not_sure_rate`` on OOD items is what should be high; ``auroc`` is of the rule's
    sureness, in-distribution items as positives (0.5 = no separation). ``refusal_bar``
    (the rule's bar that refuses ``DEFAULT_REFUSALS`` of the known test items) adds the
    OOD items' "not sure" rate at that bar, ``not_sure_at_refusals``.
    """
    if ood_probs is None or len(ood_probs) == 0:
        return {"n": 0, "not_sure_rate": None, "coverage": None, "auroc": None}
    rule = as_rule(threshold)
    ood_probs = np.asarray(ood_probs, np.float64)
    ood_sureness = rule.sureness(ood_probs)
    stats = M.threshold_stats(ood_probs, None, rule)
    stats["auroc"] = M.auroc(rule.sureness(id_probs), ood_sureness)
    counts = np.bincount(ood_probs.argmax(axis=1), minlength=ood_probs.shape[1])
    stats["predicted_as"] = {c: int(n) for c, n in zip(CLASSES, counts, strict=False)}
    stats["mean_max_prob"] = float(ood_probs.max(axis=1).mean())
    if refusal_bar is not None:
        stats.update(
            refusals=DEFAULT_REFUSALS,
            refusal_bar=refusal_bar,
            not_sure_at_refusals=float((ood_sureness < refusal_bar).mean()),
        )
    return stats
