"""Running an engine over images or manifest items: the one way every stage predicts.

Anything that predicts is an ``Engine`` (``wastenet.accelerate.load_engine`` for a
file, ``TorchEngine.from_model`` for an in-memory torch model): ``meta`` and
``predict(float32 NCHW) -> probabilities``. ``evaluate``, ``verify``, ``calibrate`` and
``shift`` run it through ``predict_items`` and score the result with
``wastenet.evaluate.metrics.score``, so an exported engine is checked exactly as the
bin runs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.accelerate.engine import Engine, load_engine
from wastenet.evaluate import metrics as M
from wastenet.evaluate.dataset import load_images
from wastenet.preprocess import normalize


def predict_images(engine: Engine, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 NHWC images already at the input size -> probabilities, normalised per batch."""
    meta = engine.meta
    outs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(np.asarray(images[start : start + batch_size]), meta.mean, meta.std)
        outs.append(np.asarray(engine.predict(batch), np.float32))
    if not outs:
        return np.zeros((0, len(meta.labels)), np.float32)
    return np.concatenate(outs)


@dataclass
class Predictions:
    """An engine's probabilities for the items that loaded, with those items' images."""

    probs: np.ndarray  # (N, classes) float32
    items: list[Any]  # the items that loaded, in order (path, source, labels)
    images: np.ndarray  # uint8 NHWC at the engine's input size
    skipped: list[dict]  # {"path", "reason"} per unreadable file
    classes: tuple[str, ...]

    @property
    def label_sets(self) -> list[tuple[str, ...]]:
        return [tuple(it.labels) for it in self.items]

    @property
    def sources(self) -> list[str]:
        return [it.source for it in self.items]

    def score(self) -> M.Score:
        """Set-aware top-1, per class and per source."""
        return M.score(self.probs, self.label_sets, self.classes, self.sources)


def predict_items(
    engine: Engine,
    items: Sequence[Any],
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    loaded: dict | None = None,
) -> Predictions:
    """Decode ``items`` at the engine's input size (``fit_image``; the data stage's cache
    with ``cache_dir``) and predict them. An unreadable file is skipped and listed.

    ``loaded``, a dict kept by the caller, shares the decoded images between engines of
    the same input size (``verify`` runs several engines over one split).
    """
    size = (engine.meta.height, engine.meta.width)
    if loaded is not None and size in loaded:
        images, kept, skipped = loaded[size]
    else:
        images, kept, skipped = load_images(items, size, cache_dir)
        if loaded is not None:
            loaded[size] = (images, kept, skipped)
    probs = predict_images(engine, images, batch_size)
    return Predictions(probs, list(kept), images, list(skipped), tuple(engine.meta.labels))


def open_engine(path: str | Path, device: str | None = None, **options: Any) -> Engine:
    """``load_engine`` for scoring: a ``.safetensors`` bundle runs on CUDA where there is
    one, unless ``device`` says otherwise."""
    if device is not None or Path(path).suffix == ".safetensors":
        options["device"] = device or "auto"
    return load_engine(path, **options)
