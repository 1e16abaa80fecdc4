"""The "not sure" rule: how sure a model is of one prediction, and when that is too little.

Every engine returns calibrated probabilities (softmax of the logits over the card's
temperature). The card's rule reads one number from them, the *sureness*, and answers
"not sure" below ``BundleMeta.not_sure_below``:

- ``top_probability`` (the default, and what every card before this rule meant): the
  top probability, optionally re-tempered to ``not_sure_temperature``;
- ``certainty``: one minus the entropy of the probabilities re-tempered to
  ``not_sure_temperature``, over log(classes); 1 is one class at probability 1, 0 is
  every class equally likely. It reads the whole distribution, not only its top.

Re-tempering needs no logits: log p times (calibration T / not-sure T) is the logits
over the not-sure T up to a constant per row, which softmax ignores. A softer
temperature than the calibrated one separates foreign objects from the classes the
model knows better (docs/experiments/2026-12-02-a-not-sure-rule-that-reads-the-whole-
distribution.md), while the probabilities the bin shows stay calibrated. numpy only:
the bin and ``evaluate`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from wastenet.classes import CONFIDENCE_THRESHOLD

if TYPE_CHECKING:
    from wastenet.meta import BundleMeta

SCORES = ("top_probability", "certainty")


@dataclass(frozen=True)
class NotSureRule:
    """``sureness(probs) < threshold`` -> "not sure"."""

    threshold: float = CONFIDENCE_THRESHOLD
    score: str = "top_probability"
    temperature: float | None = None  # the not-sure temperature; None: as calibrated
    calibration_temperature: float = 1.0  # the temperature the probabilities come at

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"not-sure score {self.score!r}: one of {', '.join(SCORES)}")

    @classmethod
    def of(cls, meta: BundleMeta, threshold: float | None = None) -> NotSureRule:
        """The card's rule; ``threshold`` (a --threshold) replaces the card's bar only."""
        return cls(
            meta.not_sure_below if threshold is None else float(threshold),
            meta.not_sure_score,
            meta.not_sure_temperature,
            meta.temperature,
        )

    def sureness(self, probs: np.ndarray) -> np.ndarray:
        """One sureness per row of ``probs`` (N x classes), or a scalar for one row."""
        p = np.asarray(probs, np.float64)
        rows = np.atleast_2d(p)
        if self.temperature is not None and self.temperature != self.calibration_temperature:
            z = np.log(np.clip(rows, 1e-30, 1.0)) * (
                self.calibration_temperature / self.temperature
            )
            z -= z.max(axis=1, keepdims=True)
            rows = np.exp(z)
            rows /= rows.sum(axis=1, keepdims=True)
        if self.score == "top_probability":
            out = rows.max(axis=1) if rows.shape[1] else np.zeros(len(rows))
        else:
            logs = np.log(np.clip(rows, 1e-30, 1.0))
            k = rows.shape[1]
            out = 1.0 + (rows * logs).sum(axis=1) / np.log(k) if k > 1 else np.ones(len(rows))
        return out if p.ndim > 1 else out[0]

    def sure(self, probs: np.ndarray) -> np.ndarray:
        """True where the rule answers (sureness at or above the threshold)."""
        return self.sureness(probs) >= self.threshold

    def describe(self) -> str:
        """As a card or a report says it: ``top probability below 0.70``."""
        name = self.score.replace("_", " ")
        at = "" if self.temperature is None else f" at T={self.temperature:g}"
        return f"{name}{at} below {self.threshold:.3g}"


DEFAULT_REFUSALS = 0.05  # the share of known items a bar set by its refusals refuses


def refusal_bar(sureness: np.ndarray, refuse: float = DEFAULT_REFUSALS) -> float:
    """The bar under which ``refuse`` of these (known) items' sureness falls: a rule with
    it refuses that share of them and no more."""
    return float(np.quantile(np.asarray(sureness, np.float64), refuse)) if refuse > 0 else 0.0


def rescale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) computed from p = softmax(logits)."""
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    out = np.exp(logp)
    return out / out.sum(axis=1, keepdims=True)


def parse_rule(text: str) -> tuple[str, float | None]:
    """``certainty@2`` -> ("certainty", 2.0); ``top_probability`` -> (..., None)."""
    score, _, temp = text.partition("@")
    if score not in SCORES:
        raise ValueError(f"{text!r}: the score is one of {', '.join(SCORES)} (as certainty@2)")
    if not temp:
        return score, None
    try:
        value = float(temp)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: the temperature after @ must be a number above 0")
    return score, value


def rule_text(score: str, temperature: float | None) -> str:
    """``parse_rule``'s inverse: ("certainty", 2.0) -> ``certainty@2``."""
    return score if temperature is None else f"{score}@{temperature:g}"


def as_rule(rule: NotSureRule | float) -> NotSureRule:
    """A rule as given, or a bare threshold as the top-probability rule (scorers accept both)."""
    return rule if isinstance(rule, NotSureRule) else NotSureRule(float(rule))
