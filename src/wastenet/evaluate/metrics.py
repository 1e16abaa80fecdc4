"""Classification metrics on plain arrays (numpy only, so the bin can verify itself).

Labels come as tuples of class names: one name is an exact label, several are a set
label (web-mixed ``paper_and_cardboard`` = ("cardboard", "paper")), none marks an
out-of-distribution item; a prediction is right for a set label when it falls in the
set. ``score`` is the one scorer: training validation, ``evaluate``, ``verify``, NNCF's
accuracy control and the benchmarks all count right answers through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from wastenet.classes import CLASSES
from wastenet.sureness import NotSureRule, as_rule

# Paper and cardboard are the pair a bin most often mixes up, and the pair that
# web-mixed cannot tell apart; the coarse view merges them.
DEFAULT_MERGE: tuple[frozenset[str], ...] = (frozenset({"paper", "cardboard"}),)


def top1(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Fraction of exact matches; None for an empty set."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else None


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> tuple[float, float]:
    """(top-1 agreement as a fraction, max abs probability difference) of two models'
    outputs on the same images, one row per image."""
    a, b = np.asarray(probs_a), np.asarray(probs_b)
    return float(np.mean(a.argmax(1) == b.argmax(1))), float(np.abs(a - b).max())


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


def label_masks(labels: Sequence[Iterable[str]] | np.ndarray, classes=CLASSES) -> np.ndarray:
    """(N, classes) bool: True where a class is in the item's label set (a row of False for
    an empty set, an out-of-distribution item). A bool mask array is returned as it is."""
    if isinstance(labels, np.ndarray) and labels.dtype == bool:
        return labels
    index = {c: i for i, c in enumerate(classes)}
    masks = np.zeros((len(labels), len(classes)), bool)
    for row, names in enumerate(labels):
        masks[row, [index[c] for c in names]] = True
    return masks


def predicted_classes(predictions: np.ndarray) -> np.ndarray:
    """Class indices: given as they are (N,), or the argmax of scores (N, classes)."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        return predictions.argmax(axis=1) if len(predictions) else np.zeros(0, np.int64)
    return predictions.astype(np.int64)


@dataclass(frozen=True)
class Score:
    """Predictions against label sets: set-aware top-1 and the numbers per class.

    ``accuracy`` is the set-aware top-1 over every item (a set label is right when the
    prediction is in it; an out-of-distribution item never is): what training
    validates on, ``verify`` compares and the robustness suite reports.
    ``exact_accuracy`` is the top-1 over exactly-labelled items (the paper's test-set
    accuracy); ``per_class`` and ``confusion`` count those items only.
    """

    pred: np.ndarray  # predicted class index per item
    masks: np.ndarray  # (N, classes) bool: each item's label set
    classes: tuple[str, ...]
    per_source: dict[str, Score] = field(default_factory=dict)

    @property
    def hits(self) -> np.ndarray:
        return self.masks[np.arange(len(self.pred)), self.pred]

    @property
    def exact(self) -> np.ndarray:
        return self.masks.sum(axis=1) == 1

    @property
    def n(self) -> int:
        return len(self.pred)

    @property
    def right(self) -> int:
        return int(self.hits.sum())

    @property
    def accuracy(self) -> float | None:
        return mean_or_none(self.hits)

    @property
    def n_exact(self) -> int:
        return int(self.exact.sum())

    @property
    def right_exact(self) -> int:
        return int(self.hits[self.exact].sum())

    @property
    def exact_accuracy(self) -> float | None:
        return mean_or_none(self.hits[self.exact])

    @property
    def confusion(self) -> np.ndarray:
        """Exactly-labelled items: row = true class, column = predicted class."""
        exact = self.exact
        truth = self.masks[exact].argmax(axis=1)
        return confusion_matrix(truth, self.pred[exact], len(self.classes))

    @property
    def per_class(self) -> dict:
        return per_class_prf(self.confusion, self.classes)


def score(
    predictions: np.ndarray,
    labels: Sequence[Iterable[str]] | np.ndarray,
    classes: Sequence[str] = CLASSES,
    sources: Sequence[str] | None = None,
) -> Score:
    """Score ``predictions`` (class indices, or probabilities / logits: their argmax)
    against ``labels`` (tuples of class names, or a bool mask per item); with
    ``sources``, ``per_source`` scores each source's items on their own."""
    pred = predicted_classes(predictions)
    masks = label_masks(labels, classes)
    if len(pred) != len(masks) or masks.shape[1] != len(classes):
        raise ValueError(
            f"{len(pred)} predictions for label masks of shape {masks.shape} "
            f"({len(classes)} classes)"
        )
    classes = tuple(classes)
    per_source = {}
    if sources is not None:
        sources = np.asarray(list(sources), dtype=object)
        for source in sorted(set(sources)):
            sel = sources == source
            per_source[source] = Score(pred[sel], masks[sel], classes)
    return Score(pred, masks, classes, per_source)


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


def threshold_stats(
    probs: np.ndarray, correct: np.ndarray | None, threshold: NotSureRule | float
) -> dict:
    """The bin's "not sure" rule (``wastenet.sureness``; a bare number is a top-probability
    threshold): below the rule's threshold it abstains.

    ``coverage`` is the fraction it answers; ``accuracy_confident`` is the accuracy on
    those answers (None when ``correct`` is unknown, as for out-of-distribution items).
    """
    rule = as_rule(threshold)
    probs = np.asarray(probs, np.float64)
    confident = rule.sure(probs) if len(probs) else np.zeros(0, bool)
    stats = {
        "threshold": rule.threshold,
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
