"""What the loop tells its hooks and listeners: each frame's result, each door decision, the run."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from wastenet.runtime.sources import Frame
from wastenet.runtime.timings import StageStats
from wastenet.runtime.vote import VoteResult


@dataclass
class FrameResult:
    frame: Frame
    present: bool
    times: dict[str, float]
    probs: np.ndarray | None = None
    label: str | None = None  # top-1 class, NOT_SURE below the vote's confidence bar
    confidence: float | None = None  # the card's sureness (wastenet.sureness)
    vote: VoteResult | None = None
    fps: float = 0.0
    crop_box: tuple[int, int, int, int] | None = None  # the object crop that was classified


@dataclass
class Actuation:
    frame_index: int
    label: str
    door: int | None  # None: the class has no door in the map
    onset_t: float  # capture time of the first window entry for this class
    decision_t: float  # capture time of the frame that decided
    command_t: float  # when the door command was sent
    servo_delay_s: float
    ok: bool

    @property
    def queue_s(self) -> float:
        return self.command_t - self.onset_t


RECENT = 1000


@dataclass
class RunSummary:
    frames: int = 0
    inferred: int = 0
    elapsed_s: float = 0.0
    decisions: int = 0  # door decisions in the whole run
    # The most recent decisions only: a bin runs for weeks, and every one is also in
    # actuations.jsonl. (An unbounded list here was the loop's slow memory growth.)
    actuations: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    stages: StageStats = field(default_factory=StageStats)
    inference_gaps: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    source_lost: str | None = None  # why a camera was given up on; None: it was not

    @property
    def fps(self) -> float:
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ips(self) -> float:
        """Inferences per second while something is in view: the rate the vote fills at."""
        gap = float(np.median(self.inference_gaps)) if self.inference_gaps else 0.0
        return 1.0 / gap if gap > 0 else self.fps
