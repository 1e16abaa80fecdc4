"""Confidence calibration from probabilities alone (numpy): temperature and ECE.

Label smoothing (our recipe) and heavy augmentation make a model under-confident, so
the bin's "at least 70 % sure" rule would mean something different for every model.
Temperature scaling (Guo et al. 2017) divides the logits by one scalar ``T`` fitted to
minimise the validation negative log-likelihood; the argmax, and so accuracy, is
unchanged. The bundle stores ``T`` (``BundleMeta.temperature``); export bakes it into
the graph before the softmax, and the torch paths apply it, so every artifact reports
calibrated probabilities.

Fitting works from probabilities alone: ``log p`` equals the logits up to a per-row
constant that the softmax ignores, so any engine's output can be recalibrated. A set
label (``paper_and_cardboard``) scores the summed probability of its members.

Deploy side: scoring an exported artifact needs these and nothing of torch;
fitting T for a bundle is a build step, ``wastenet.train.calibrate`` (torch), built on them.
"""

from __future__ import annotations

import numpy as np

from wastenet.errors import WasteNetError
from wastenet.evaluate.metrics import label_masks, score  # noqa: F401  (label_masks: re-exported)
from wastenet.sureness import rescale

LOG_T_RANGE = (np.log(0.05), np.log(20.0))
ECE_BINS = 15


def set_nll(probs: np.ndarray, masks: np.ndarray) -> float:
    """Mean -log of the probability summed over each item's label set."""
    return float(-np.mean(np.log(np.clip((probs * masks).sum(axis=1), 1e-12, None))))


def fit_temperature(probs: np.ndarray, masks: np.ndarray, iters: int = 60) -> float:
    """The T minimising the set-label NLL (golden-section search on log T; NLL is unimodal)."""
    if len(probs) == 0:
        raise WasteNetError("fitting a temperature needs at least one labelled prediction")
    lo, hi = LOG_T_RANGE
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = (set_nll(rescale(probs, np.exp(x)), masks) for x in (a, b))
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = set_nll(rescale(probs, np.exp(a)), masks)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = set_nll(rescale(probs, np.exp(b)), masks)
    return float(np.exp((lo + hi) / 2))


def expected_calibration_error(probs: np.ndarray, masks: np.ndarray, bins: int = ECE_BINS) -> float:
    """Share-weighted gap between confidence and accuracy over equal-width confidence bins."""
    if len(probs) == 0:
        return 0.0
    conf = probs.max(axis=1)
    correct = score(probs, masks, classes=range(masks.shape[1])).hits  # set-aware
    which = np.minimum((conf * bins).astype(int), bins - 1)
    gap = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            gap += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(gap)


def calibration_summary(probs: np.ndarray, masks: np.ndarray, temperature: float) -> dict:
    after = rescale(probs, temperature)
    return {
        "temperature": temperature,
        "images": len(probs),
        "nll_before": set_nll(probs, masks),
        "nll_after": set_nll(after, masks),
        "ece_before": expected_calibration_error(probs, masks),
        "ece_after": expected_calibration_error(after, masks),
        "mean_confidence_before": float(probs.max(axis=1).mean()),
        "mean_confidence_after": float(after.max(axis=1).mean()),
    }
