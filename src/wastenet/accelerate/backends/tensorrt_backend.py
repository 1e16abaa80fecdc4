"""TensorRT: deserialises an engine built ahead of time (see ``accelerate.tensorrt``).

The engine's metadata and build key (GPU, TensorRT version, source ONNX hash) live
in a sidecar ``<engine>.json``; an engine built for another GPU or TensorRT version
is refused with a message that says how to rebuild it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine, check_graph
from wastenet.accelerate.formats import Format
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta


def sidecar_path(path: Path) -> Path:
    return Path(str(path) + ".json")


def read_sidecar(path: Path) -> dict:
    side = sidecar_path(path)
    try:
        data = json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise ModelFileError(f"{path}: its metadata file {side.name} is missing") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{side}: damaged engine metadata ({exc})") from exc
    if META_KEY not in data or "build_key" not in data:
        raise ModelFileError(f"{side}: not WasteNet engine metadata")
    return data


class TensorRTEngine(Engine):
    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, engine, torch_mod):
        super().__init__(path, fmt, meta)
        self._engine = engine
        self._context = engine.create_execution_context()
        self._torch = torch_mod
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        import tensorrt as trt

        self._input = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self._output = next(
            n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT
        )
        inputs = sum(engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names)
        check_graph(  # -1 marks a dynamic dimension
            path, meta, list(engine.get_tensor_shape(self._input)),
            list(engine.get_tensor_shape(self._output)), inputs=inputs,
        )  # fmt: skip
        self._stream = torch_mod.cuda.Stream()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        torch = self._torch
        outs = []
        for i in range(batch.shape[0]):  # engines are built for batch 1 (paper 4.2.2)
            x = torch.from_numpy(batch[i : i + 1]).cuda()
            self._context.set_input_shape(self._input, tuple(x.shape))
            y = torch.empty(tuple(self._context.get_tensor_shape(self._output)), device="cuda")
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            self._context.execute_async_v3(self._stream.cuda_stream)
            self._stream.synchronize()
            outs.append(y.float().cpu().numpy())
        return self.check_output(np.concatenate(outs).astype(np.float32))

    def close(self) -> None:
        self._context = None
        self._engine = None


def load(path: Path, fmt: Format, device: str = "cuda", **_: object) -> Engine:
    import tensorrt as trt
    import torch  # CUDA buffers; TensorRT deployments carry torch or cuda-python anyway

    from wastenet.accelerate.tensorrt import current_build_env

    data = read_sidecar(path)
    meta = BundleMeta.from_json(data[META_KEY], origin=str(path))
    env = current_build_env()
    built = data["build_key"]
    for key in ("gpu", "tensorrt"):
        if built.get(key) != env[key]:
            raise ModelFileError(
                f"{path}: built for {key} {built.get(key)!r}, this machine has {env[key]!r}; "
                "rebuild it with wastenet export"
            )
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise ModelFileError(f"{path}: damaged TensorRT engine (deserialisation failed)")
    return TensorRTEngine(path, fmt, meta, engine, torch)
