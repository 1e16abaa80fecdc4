"""Evaluation: test-split metrics, "not sure" and OOD rates, robustness, real-world protocol.

Importing this package needs numpy and OpenCV only: torch (for ``.safetensors``
bundles) and matplotlib (for figures) are imported when used. Scoring an exported
artifact runs on the deploy install alone; without matplotlib the figures are
skipped and report.json / report.md still written.

Anything scored is an ``Engine`` (``wastenet.accelerate``), the protocol the bin runs:
``evaluate.predict`` runs one over manifest items, ``evaluate.metrics.score`` scores it.
"""

from wastenet.evaluate.metrics import Score, score
from wastenet.evaluate.predict import open_engine, predict_items
from wastenet.evaluate.report import evaluate_model

__all__ = ["Score", "evaluate_model", "open_engine", "predict_items", "score"]
