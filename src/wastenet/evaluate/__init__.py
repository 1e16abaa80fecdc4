"""Evaluation: test-split metrics, "not sure" and OOD rates, robustness, real-world protocol.

Importing this package needs numpy and OpenCV only: torch (for ``.safetensors``
bundles) and matplotlib (for figures) are imported when used. Scoring an exported
artifact runs on the deploy install alone; without matplotlib the figures are
skipped and report.json / report.md still written.
"""

from wastenet.evaluate.predictor import Predictor, load_predictor
from wastenet.evaluate.report import evaluate_model

__all__ = ["Predictor", "evaluate_model", "load_predictor"]
