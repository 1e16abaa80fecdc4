"""Evaluation: test-split metrics, "not sure" and OOD rates, robustness, real-world protocol.

Importing this package needs numpy and OpenCV only: torch (for ``.safetensors``
bundles) and matplotlib (for figures) are imported when used.
"""

from wastenet.evaluate.predictor import Predictor, load_predictor
from wastenet.evaluate.report import evaluate_model

__all__ = ["Predictor", "evaluate_model", "load_predictor"]
