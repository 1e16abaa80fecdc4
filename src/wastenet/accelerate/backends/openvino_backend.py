"""OpenVINO: runs the FP32 and INT8 IR (``.xml`` + ``.bin``) on CPU (or GPU/NPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine, softmax
from wastenet.accelerate.formats import Format
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta


class OpenVinoEngine(Engine):
    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, compiled, is_probs: bool):
        super().__init__(path, fmt, meta)
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._is_probs = is_probs

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        out = self._request.infer({0: batch}, share_inputs=True)
        probs = np.array(out[self._compiled.output(0)], dtype=np.float32)
        return probs if self._is_probs else softmax(probs, self.meta.temperature)

    def close(self) -> None:
        self._request = None
        self._compiled = None


def read_meta(model, path: Path) -> BundleMeta:
    if not model.has_rt_info([META_KEY]):
        raise ModelFileError(f"{path}: has no WasteNet metadata (not exported by wastenet export)")
    return BundleMeta.from_json(model.get_rt_info([META_KEY]).astype(str), origin=str(path))


def read_model(path: Path):
    import openvino as ov

    if not path.with_suffix(".bin").exists():
        raise ModelFileError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for damaged IR
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable OpenVINO model ({first})") from exc


def compile_config(threads: int = 0) -> dict:
    """Latency hint, one stream; ``threads`` inference threads when given."""
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


def load(path: Path, fmt: Format, threads: int = 0, device: str = "cpu", **_: object) -> Engine:
    import openvino as ov

    model = read_model(path)
    meta = read_meta(model, path)
    is_probs = model.output(0).get_names() and "probs" in model.output(0).get_names()
    try:
        compiled = ov.Core().compile_model(model, device.upper(), compile_config(threads))
    except Exception as exc:
        raise ModelFileError(f"{path}: OpenVINO cannot compile it for {device} ({exc})") from exc
    return OpenVinoEngine(path, fmt, meta, compiled, bool(is_probs))
