"""A true majority vote over the last N predictions, and the paper's index average for contrast.

Each prediction enters the window as its class name, or as ``NOT_SURE`` when its
sureness (the model card's rule, ``wastenet.sureness``) is below ``min_confidence``.
A class wins when it holds more than ``min_share`` of the *whole* window (N slots, so
a fresh window needs N/2 + 1 votes at the default 0.5, as in the paper's analysis).
"Not sure" can fill the window but never wins. The decision counts as changed only
when a different class wins; a reset (nothing in front of the camera) forgets the last
decision, so the next item opens its door even if it is of the same class.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np

from wastenet.classes import CONFIDENCE_THRESHOLD, NOT_SURE


@dataclass
class VoteResult:
    label: str | None  # the winning class, or None while no class has the majority
    share: float  # the winner's (or leader's) share of the window
    changed: bool  # True exactly once per new winning class: time to actuate
    onset_t: float | None = None  # capture time of the oldest window entry of the winner


class MajorityVote:
    def __init__(
        self, n: int = 10, min_confidence: float = CONFIDENCE_THRESHOLD, min_share: float = 0.5
    ) -> None:
        if n < 1 or not 0 <= min_confidence <= 1 or not 0 <= min_share < 1:
            raise ValueError("vote needs n >= 1, 0 <= min_confidence <= 1, 0 <= min_share < 1")
        self.n, self.min_confidence, self.min_share = n, min_confidence, min_share
        self.window: deque[tuple[str, float]] = deque(maxlen=n)
        self.decided: str | None = None

    def entry(self, label: str, confidence: float) -> str:
        return label if confidence >= self.min_confidence else NOT_SURE

    def add(self, label: str, confidence: float, t: float = 0.0) -> VoteResult:
        """Add one prediction (its label and sureness) captured at time ``t``."""
        self.window.append((self.entry(label, confidence), t))
        counts = Counter(name for name, _ in self.window if name != NOT_SURE)
        if not counts:
            return VoteResult(None, 0.0, False)
        leader, count = counts.most_common(1)[0]
        share = count / self.n
        if share <= self.min_share:
            return VoteResult(None, share, False)
        changed = leader != self.decided
        self.decided = leader
        onset = next(t for name, t in self.window if name == leader)
        return VoteResult(leader, share, changed, onset)

    def reset(self) -> None:
        self.window.clear()
        self.decided = None


def paper_index_average(indices: list[int]) -> int:
    """The paper's bin code: the rounded mean of the last class indices (a bug, kept for tests).

    Cardboard (0) and metal (2) in equal numbers average to 1, which is glass.
    """
    return int(np.round(np.mean(indices)))
