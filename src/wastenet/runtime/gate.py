"""Presence gate: infer only while something is in front of the camera, to save power.

A running average of the empty scene is kept on a small grey image; a frame counts
as "present" when the share of pixels that differ from it by more than
``pixel_delta`` grey levels exceeds ``threshold``. The background learns only
while nothing is present, so an item left in view does not fade into it. The changed
pixels also say where the item is: ``object_box`` gives their bounding box, so the bin
can classify a crop of the item (as training crops are) instead of the whole tray.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class GateConfig:
    enabled: bool = True
    threshold: float = 0.03  # share of changed pixels that means "something is there"
    pixel_delta: float = 25.0  # grey levels a pixel must differ by to count as changed
    learn_rate: float = 0.05  # running-average weight of each empty frame
    size: tuple[int, int] = (64, 48)  # (width, height) of the comparison image
    relearn_after: int = 600  # frames "present" in a row before the view is taken as the new empty


class PresenceGate:
    def __init__(self, config: GateConfig | None = None) -> None:
        self.config = config or GateConfig()
        self.background: np.ndarray | None = None
        self.last_score = 0.0
        self.present_run = 0
        self.last_changed: np.ndarray | None = None  # bool mask of the last update's changes

    def _small_grey(self, image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, self.config.size, interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small, (3, 3), 0).astype(np.float32)

    def score(self, image: np.ndarray) -> float:
        """Share of pixels that differ from the learned background (0 before one is learned)."""
        if self.background is None:
            return 0.0
        diff = np.abs(self._small_grey(image) - self.background)
        return float(np.count_nonzero(diff > self.config.pixel_delta)) / diff.size

    def update(self, image: np.ndarray) -> bool:
        """Whether something is present; learns the background from empty frames."""
        if not self.config.enabled:
            return True
        small = self._small_grey(image)
        if self.background is None:
            self.background = small
            self.last_score = 0.0
            return False
        diff = np.abs(small - self.background)
        self.last_changed = diff > self.config.pixel_delta
        self.last_score = float(np.count_nonzero(self.last_changed)) / diff.size
        present = self.last_score > self.config.threshold
        self.present_run = self.present_run + 1 if present else 0
        if not present:
            cv2.accumulateWeighted(small, self.background, self.config.learn_rate)
        elif self.present_run > self.config.relearn_after:
            # An item learned at start-up, a moved camera or a light switched on would
            # otherwise hold the gate open for ever: take the view as the new empty scene.
            self.background, self.present_run = small, 0
            return False
        return present

    def object_box(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Bounding box, in pixels of a ``width`` x ``height`` frame, of the last update's
        changed pixels (specks removed); None when nothing changed."""
        if self.last_changed is None or not self.last_changed.any():
            return None
        mask = cv2.morphologyEx(
            self.last_changed.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)
        )
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return None
        gw, gh = self.config.size
        sx, sy = width / gw, height / gh
        return (
            int(xs.min() * sx),
            int(ys.min() * sy),
            int(np.ceil((xs.max() + 1) * sx)),
            int(np.ceil((ys.max() + 1) * sy)),
        )

    def reset(self) -> None:
        self.background = None
        self.present_run = 0
        self.last_changed = None
