"""Anything evaluation can score: ``.meta`` (BundleMeta) and ``predict(NCHW) -> probs``.

Every model, the ``.safetensors`` bundle included (torch, imported lazily), goes
through ``wastenet.accelerate.load_engine``, the same protocol the bin uses, so an
exported engine is verified exactly as it will run. An in-memory torch model is
wrapped by ``TorchEngine.from_model``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta
from wastenet.preprocess import normalize


@runtime_checkable
class Predictor(Protocol):
    meta: BundleMeta

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """float32 NCHW, already normalised -> float32 probabilities (N, classes)."""
        ...


def load_predictor(path: str | Path, device: str | None = None, **options: Any) -> Predictor:
    """A bundle (torch) or an exported artifact (its accelerate backend), by suffix."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        from wastenet.accelerate import load_engine
    except ImportError as exc:
        raise ModelFileError(f"{path}: no engine loader available for {path.suffix!r}") from exc
    if device is not None or path.suffix == ".safetensors":
        options.setdefault("device", device or "auto")  # a bundle uses CUDA where there is one
    return load_engine(path, **options)


def predict_images(predictor: Predictor, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """uint8 NHWC images already at the input size -> probabilities, normalised per batch."""
    meta = predictor.meta
    outs = []
    for start in range(0, len(images), batch_size):
        batch = normalize(np.asarray(images[start : start + batch_size]), meta.mean, meta.std)
        outs.append(np.asarray(predictor.predict(batch), np.float32))
    if not outs:
        return np.zeros((0, len(meta.labels)), np.float32)
    return np.concatenate(outs)


def safetensors_parameter_count(path: str | Path) -> int | None:
    """Elements in all tensors of a safetensors file, from its header alone (no torch)."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # buffers, not parameters
        total += int(np.prod(info.get("shape", []), dtype=np.int64))
    return total


def onnx_parameter_count(path: str | Path) -> int | None:
    """Elements in an ONNX graph's initializers (weights); None without the onnx package."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # a damaged file: the size is still worth reporting
        return None
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer))


def model_stats(predictor: Predictor, path: str | Path | None = None) -> dict:
    """Parameters and file size, as table 5 reports them."""
    params = getattr(predictor, "num_parameters", None)
    if callable(params):
        params = params()
    stats: dict = {"parameters": int(params) if params is not None else None}
    if path is not None and Path(path).exists():
        path = Path(path)
        from wastenet.accelerate.bench import artifact_bytes

        size = artifact_bytes(path)  # an OpenVINO .xml counts its .bin too
        stats.update(path=str(path), file_size_bytes=int(size), file_size_mb=round(size / 1e6, 3))
        if stats["parameters"] is None and path.suffix == ".safetensors":
            stats["parameters"] = safetensors_parameter_count(path)
        elif stats["parameters"] is None and path.suffix == ".onnx":
            stats["parameters"] = onnx_parameter_count(path)
    return stats
