"""Classification metrics on plain arrays (numpy only, so the bin can verify itself).

Labels come as tuples of class names: one name is an exact label, several are a set
label (web-mixed ``paper_and_cardboard`` = ("cardboard", "paper")); a prediction
is right for a set label when it falls in the set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from wastenet.classes import CLASSES

# Paper and cardboard are the pair a bin most often mixes up, and the pair that
# web-mixed cannot tell apart; the coarse view merges them.
DEFAULT_MERGE: tuple[frozenset[str], ...] = (frozenset({"paper", "cardboard"}),)


def top1(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Fraction of exact matches; None for an empty set."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else None


def wilson_interval(right: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score interval (95 % by default) for ``right`` of ``n``; None for n = 0.

    How far one test split's top-1 can be trusted: 226 of 238 is 95.0 %, 91.4-97.1 %.
    """
    if n == 0:
        return None
    p, z2 = right / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    lo = 0.0 if right == 0 else float(centre - half)
    hi = 1.0 if right == n else float(centre + half)
    return lo, hi


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def normalize_rows(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its total (a row of zeros stays zero): recall on the diagonal."""
    totals = cm.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(cm, totals, out=np.zeros(cm.shape, np.float64), where=totals > 0)


def per_class_prf(cm: np.ndarray, labels: Sequence[str]) -> dict:
    """Precision, recall, F1 and support per class, plus macro and weighted averages.

    A class never predicted has precision 0 (not NaN), as sklearn's zero_division=0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    out: dict = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(labels)
    }
    present = support > 0
    total = support.sum()
    for key, arr in (("precision", precision), ("recall", recall), ("f1", f1)):
        out.setdefault("macro_avg", {})[key] = float(arr[present].mean()) if present.any() else 0.0
        out.setdefault("weighted_avg", {})[key] = (
            float((arr * support).sum() / total) if total else 0.0
        )
    out["macro_avg"]["support"] = out["weighted_avg"]["support"] = int(total)
    return out


def auroc(positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Area under the ROC curve for scores where positives should rank higher.

    The Mann-Whitney U statistic with average ranks for ties; None if a side is empty.
    """
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if pos.size == 0 or neg.size == 0:
        return None
    scores = np.concatenate([pos, neg])
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(scores.size, np.float64)
    sorted_scores = scores[order]
    # average rank over each run of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def in_label_set(pred_idx: np.ndarray, label_sets: Sequence[Iterable[str]], classes=CLASSES):
    """Boolean array: the predicted class is one of the item's label(s)."""
    names = [classes[int(i)] for i in np.asarray(pred_idx)]
    return np.array([n in set(ls) for n, ls in zip(names, label_sets, strict=True)], bool)


def coarse_correct(
    pred_idx: np.ndarray,
    label_sets: Sequence[Iterable[str]],
    merge: Sequence[frozenset[str]] = DEFAULT_MERGE,
    classes=CLASSES,
) -> np.ndarray:
    """Boolean array: right once the classes in each ``merge`` group count as one."""

    def group(name: str) -> str:
        for g in merge:
            if name in g:
                return "+".join(sorted(g))
        return name

    out = []
    for i, labels in zip(np.asarray(pred_idx), label_sets, strict=True):
        out.append(group(classes[int(i)]) in {group(n) for n in labels})
    return np.array(out, bool)


def mean_or_none(mask: np.ndarray) -> float | None:
    mask = np.asarray(mask)
    return float(mask.mean()) if mask.size else None


def threshold_stats(probs: np.ndarray, correct: np.ndarray | None, threshold: float) -> dict:
    """The bin's "not sure" rule: below ``threshold`` top probability it abstains.

    ``coverage`` is the fraction it answers; ``accuracy_confident`` is the accuracy on
    those answers (None when ``correct`` is unknown, as for out-of-distribution items).
    """
    probs = np.asarray(probs, np.float64)
    confident = probs.max(axis=1) >= threshold if len(probs) else np.zeros(0, bool)
    stats = {
        "threshold": float(threshold),
        "n": int(len(probs)),
        "not_sure_rate": mean_or_none(~confident),
        "coverage": mean_or_none(confident),
    }
    if correct is not None:
        correct = np.asarray(correct, bool)
        stats["accuracy_confident"] = mean_or_none(correct[confident])
        stats["accuracy_all"] = mean_or_none(correct)
        # what reaches a bin door wrongly: confident and wrong, over all items
        stats["confident_error_rate"] = mean_or_none(confident & ~correct)
    return stats
