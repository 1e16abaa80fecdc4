"""ONNX Runtime: runs the FP32, FP16 and INT8 (QDQ) ONNX artifacts."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine, check_graph, softmax
from wastenet.accelerate.formats import Format
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta

log = logging.getLogger(__name__)


class OnnxEngine(Engine):
    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, session, is_probs: bool):
        super().__init__(path, fmt, meta)
        self._session = session
        self._input = session.get_inputs()[0].name
        self._is_probs = is_probs

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        out = self.check_output(self._session.run(None, {self._input: batch})[0])
        out = out.astype(np.float32)
        return out if self._is_probs else softmax(out, self.meta.temperature)

    def close(self) -> None:
        self._session = None


def session_options(threads: int = 0):
    """Full graph optimisation, one inference at a time, ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    return opts


def open_session(path: Path, threads: int = 0, device: str = "cpu"):
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        providers.insert(0, "CUDAExecutionProvider")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=providers)
    except Exception as exc:  # ORT raises its own exception types for damaged files
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable ONNX model ({first})") from exc


def read_meta(session, path: Path) -> BundleMeta:
    custom = session.get_modelmeta().custom_metadata_map
    if META_KEY not in custom:
        raise ModelFileError(
            f"{path}: has no WasteNet metadata (not exported by wastenet export); "
            "its labels, input size and normalisation are unknown"
        )
    return BundleMeta.from_json(custom[META_KEY], origin=str(path))


def check_session(session, path: Path, meta: BundleMeta) -> None:
    """The graph's inputs and first output against ``meta`` (see ``check_graph``)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    first = inputs[0].shape if inputs else None
    check_graph(path, meta, first, outputs[0].shape, inputs=len(inputs))
    if inputs[0].type != "tensor(float)":
        raise ModelFileError(
            f"{path}: the graph's input is {inputs[0].type}, a WasteNet model takes "
            "tensor(float) (float32 NCHW)"
        )


def load(path: Path, fmt: Format, threads: int = 0, device: str = "cpu", **_: object) -> Engine:
    session = open_session(path, threads, device)
    meta = read_meta(session, path)
    check_session(session, path, meta)
    outputs = session.get_outputs()
    is_probs = outputs[0].name == "probs"
    if fmt.precision == "int8" and not device.startswith("cuda"):
        from wastenet.accelerate.cpu import SATURATION_WARNING, int8_saturation_risk

        if int8_saturation_risk():
            log.warning("%s: %s", path.name, SATURATION_WARNING)
    return OnnxEngine(path, fmt, meta, session, is_probs)
