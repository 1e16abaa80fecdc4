"""One inference protocol for every backend: ``load_engine(path).predict(batch)``.

Every engine takes a float32 NCHW batch already preprocessed with its own
``meta`` (``wastenet.preprocess``) and returns float32 probabilities (N, classes).
Backends live in ``wastenet.accelerate.backends`` and import their runtime lazily,
so the deploy side needs only numpy and the one runtime it uses.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.accelerate.formats import Format, format_for_path
from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta


class Engine:
    """Base of every backend: holds the metadata and checks the input's shape."""

    format: Format
    meta: BundleMeta
    path: Path

    def __init__(self, path: Path, fmt: Format, meta: BundleMeta) -> None:
        self.path = Path(path)
        self.format = fmt
        self.meta = meta

    @property
    def name(self) -> str:
        return self.format.name

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Reject a batch that does not match the model's input, with a clear message."""
        batch = np.asarray(batch)
        expected = (3, self.meta.height, self.meta.width)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ModelFileError(
                f"{self.path}: expects input N x {expected[0]} x {expected[1]} x {expected[2]} "
                f"(NCHW, {self.meta.height}x{self.meta.width} as h x w), got shape "
                f"{tuple(batch.shape)}; preprocess with the artifact's own meta.input_size"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's resources; the engine cannot predict afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.path}>"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from a logits-output graph (ours output probabilities, T applied)."""
    shifted = logits / temperature
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def resolve_artifact(path: str | Path) -> Path:
    """An artifact path; a ``*_openvino`` folder resolves to the one IR ``.xml`` inside."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelFileError(f"{path}: a folder must hold exactly one OpenVINO .xml model")
        return xmls[0]
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    return path


def load_engine(path: str | Path, **options: Any) -> Engine:
    """Open any artifact of the format table; the suffix picks the backend."""
    path = resolve_artifact(path)
    fmt = format_for_path(path)
    reason = fmt.unavailable_reason()
    if reason is not None:
        raise ModelFileError(f"{path}: cannot load a {fmt.name} artifact here: {reason}")
    known = {k: v for k, v in options.items() if k in fmt.options}
    unknown = sorted(set(options) - set(fmt.options) - {"device"})
    if unknown:
        raise ModelFileError(
            f"{path}: {fmt.name} does not take option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(fmt.options)) or 'none'}"
        )
    if "device" in options:
        known["device"] = options["device"]
    module = importlib.import_module(f"wastenet.accelerate.backends.{fmt.backend}")
    return module.load(path, fmt, **known)
