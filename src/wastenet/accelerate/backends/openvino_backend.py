"""OpenVINO: runs the FP32 and INT8 IR (``.xml`` + ``.bin``) on CPU (or GPU/NPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine, check_graph, softmax
from wastenet.accelerate.formats import Format
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta


class OpenVinoEngine(Engine):
    """Compiles the model once per batch size it is asked for, with that batch size fixed:
    a static 1x3xHxW shape ran batch-1 inference (the bin's) 9 % faster than the
    dynamic-batch IR (benchmarks/bench_openvino_static.py). At most ``MAX_SHAPES``
    compiled shapes are kept."""

    MAX_SHAPES = 4

    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, model, config: dict,
                 device: str, is_probs: bool):  # fmt: skip
        super().__init__(path, fmt, meta)
        self._model = model
        self._config = config
        self._device = device
        self._requests: dict[int, tuple] = {}
        self._is_probs = is_probs
        self._request_for(1)  # compile errors surface at load, not at the first frame

    def _request_for(self, n: int):
        if n not in self._requests:
            import openvino as ov

            model = self._model.clone()
            model.reshape([n, 3, self.meta.height, self.meta.width])
            try:
                compiled = ov.Core().compile_model(model, self._device.upper(), self._config)
            except Exception as exc:
                raise ModelFileError(
                    f"{self.path}: OpenVINO cannot compile it for {self._device} ({exc})"
                ) from exc
            if len(self._requests) >= self.MAX_SHAPES:
                self._requests.pop(next(iter(self._requests)))
            self._requests[n] = (compiled, compiled.create_infer_request())
        return self._requests[n]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        compiled, request = self._request_for(len(batch))
        out = request.infer({0: batch}, share_inputs=True)
        probs = self.check_output(np.array(out[compiled.output(0)], dtype=np.float32))
        return probs if self._is_probs else softmax(probs, self.meta.temperature)

    def close(self) -> None:
        self._requests = {}
        self._model = None


def read_meta(model, path: Path) -> BundleMeta:
    if not model.has_rt_info([META_KEY]):
        raise ModelFileError(f"{path}: has no WasteNet metadata (not exported by wastenet export)")
    return BundleMeta.from_json(model.get_rt_info([META_KEY]).astype(str), origin=str(path))


def port_shape(port) -> list | None:
    """An OpenVINO port's partial shape as ints and None (dynamic); None for dynamic rank."""
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        return None
    return [d.get_length() if d.is_static else None for d in shape]


def check_model(model, path: Path, meta: BundleMeta) -> None:
    """The IR's inputs and first output against ``meta``, before any compile."""
    inputs = model.inputs
    first = port_shape(inputs[0]) if inputs else None
    check_graph(path, meta, first, port_shape(model.output(0)), inputs=len(inputs))


def read_model(path: Path):
    import openvino as ov

    if not path.with_suffix(".bin").exists():
        raise ModelFileError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
    try:
        return ov.Core().read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for damaged IR
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: not a loadable OpenVINO model ({first})") from exc


def compile_config(threads: int = 0, device: str = "cpu") -> dict:
    """Latency hint, one stream; ``threads`` inference threads when given. On a CPU the
    float parts compute in f32: with AVX-512 BF16 or AMX, OpenVINO would otherwise run an
    "FP32" model (and an INT8 model's float layers) in bf16, and its verified accuracy
    would not be the accuracy the bin gets."""
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if device.lower() == "cpu":
        config["INFERENCE_PRECISION_HINT"] = "f32"
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(int(threads))
    return config


def load(path: Path, fmt: Format, threads: int = 0, device: str = "cpu", **_: object) -> Engine:
    model = read_model(path)
    meta = read_meta(model, path)
    check_model(model, path, meta)
    is_probs = model.output(0).get_names() and "probs" in model.output(0).get_names()
    config = compile_config(threads, device)
    return OpenVinoEngine(path, fmt, meta, model, config, device, bool(is_probs))
