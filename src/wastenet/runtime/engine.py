"""The bin's view of an inference engine: ``load_engine(path)`` with ``.meta`` and ``.predict``.

The real loaders live in ``wastenet.accelerate`` (one backend per format). Until
that package offers ``load_engine``, a minimal ONNX Runtime engine stands in so
the bin can run an ``.onnx`` artifact; both follow the same protocol.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta


class Engine(Protocol):
    meta: BundleMeta

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


class OnnxEngine:
    """ONNX Runtime on the CPU; the model's WasteNet metadata says how to preprocess."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelFileError(f"{path}: not a loadable ONNX model ({exc})") from exc
        custom = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in custom:
            raise ModelFileError(f"{path}: an ONNX model without WasteNet metadata")
        self.meta = BundleMeta.from_json(custom[META_KEY], origin=str(path))
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]


def load_engine(path: str | Path, **options) -> Engine:
    """An engine for the artifact at ``path``, through wastenet.accelerate when available."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        from wastenet.accelerate import load_engine as accelerate_load_engine
    except ImportError:
        accelerate_load_engine = None
    if accelerate_load_engine is not None:
        return accelerate_load_engine(path, **options)
    if path.suffix.lower() != ".onnx":
        raise ModelFileError(f"{path}: this build of the bin can only run .onnx models")
    return OnnxEngine(path, **options)
