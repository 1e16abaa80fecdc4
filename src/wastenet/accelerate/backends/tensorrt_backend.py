"""TensorRT: deserialises an engine built ahead of time (see ``accelerate.tensorrt``).

The engine's metadata and build key (GPU, TensorRT version, source ONNX hash) live
in a sidecar ``<engine>.json``; an engine built for another GPU or TensorRT version
is refused with a message that says how to rebuild it.

Inference uses TensorRT's own Python API and device buffers from cuda-python
(``cuda.bindings.runtime``), never torch: a Jetson running the bin carries only
``tensorrt`` and ``cuda-python``. Both are imported when an engine loads. What the
buffers must hold (shape, dtype, bytes, batch chunks) is worked out by the pure
functions below, which run without either.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.accelerate.engine import Engine, check_graph, static_dim
from wastenet.accelerate.formats import Format
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta

# TensorRT DataType names -> numpy; BF16, FP8 and INT4 have no numpy type.
TRT_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


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


# --- bookkeeping: pure, testable without TensorRT or a GPU ---------------------------


@dataclass(frozen=True)
class TensorSpec:
    """One I/O tensor at the shape it runs at: what its device buffer holds."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def numpy_dtype(trt_dtype: object, tensor: str = "tensor") -> np.dtype:
    """numpy's dtype for a TensorRT ``DataType`` (or its name, ``"FLOAT"``)."""
    key = str(getattr(trt_dtype, "name", trt_dtype)).rsplit(".", 1)[-1].upper()
    if key not in TRT_DTYPES:
        raise ModelFileError(
            f"{tensor!r} is {key}, which numpy cannot hold; rebuild the engine with "
            "float32 or float16 inputs and outputs (wastenet export)"
        )
    return np.dtype(TRT_DTYPES[key])


def input_spec(
    name: str, engine_shape: Sequence[object], trt_dtype: object, height: int, width: int
) -> TensorSpec:
    """The input at the batch the engine runs: its static batch, or 1 where it is dynamic.

    ``check_graph`` has already matched the other dimensions with the metadata.
    """
    dims = list(engine_shape)
    batch = (static_dim(dims[0]) if dims else None) or 1
    return TensorSpec(name, (batch, 3, int(height), int(width)), numpy_dtype(trt_dtype, name))


def output_spec(
    name: str, resolved_shape: Sequence[int], trt_dtype: object, batch: int
) -> TensorSpec:
    """The output once the input shape is set: every dimension known, batch x classes."""
    shape = tuple(int(d) for d in resolved_shape)
    if len(shape) != 2 or min(shape) <= 0 or shape[0] != batch:
        raise ModelFileError(
            f"output {name!r} resolves to {list(shape)} for a batch of {batch}; "
            f"expected {batch} x classes"
        )
    return TensorSpec(name, shape, numpy_dtype(trt_dtype, name))


def chunks(n: int, batch: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges covering ``n`` images, ``batch`` at a time."""
    return [(start, min(start + batch, n)) for start in range(0, n, batch)]


def pad_batch(x: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Up to ``spec.shape[0]`` images as the input buffer holds them: cast, zero rows after."""
    if len(x) > spec.shape[0] or tuple(x.shape[1:]) != spec.shape[1:]:
        raise ModelFileError(f"{tuple(x.shape)} does not fit the engine input {spec.shape}")
    out = np.zeros(spec.shape, spec.dtype)
    out[: len(x)] = x
    return out


def device_name(raw: object) -> str:
    """``cudaDeviceProp.name`` (NUL-padded bytes) as text, as torch reports it too."""
    if isinstance(raw, bytes | bytearray):
        raw = bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")
    return str(raw).strip()


def check_build_env(path: Path, built: dict, here: dict) -> None:
    """Refuse an engine built for another GPU or TensorRT version."""
    for key in ("gpu", "tensorrt"):
        if built.get(key) != here[key]:
            raise ModelFileError(
                f"{path}: built for {key} {built.get(key)!r}, this machine has {here[key]!r}; "
                "rebuild it with wastenet export"
            )


def cuda_call(result: Any, what: str) -> Any:
    """The value of a cuda-python call, which returns ``(error, *values)``; errors raise."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ModelFileError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# --- CUDA and TensorRT ---------------------------------------------------------------


def cudart() -> Any:
    """cuda-python's runtime API module."""
    try:
        from cuda.bindings import runtime
    except ImportError as exc:
        raise ModelFileError(
            "TensorRT engines need cuda-python for device buffers (pip install cuda-python)"
        ) from exc
    return runtime


def native_handle(obj: Any) -> int:
    """A CUDA object's address as an int (``int(obj)`` is deprecated in cuda-python 12.9)."""
    if isinstance(obj, int):
        return obj
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python before 12.9
        return int(obj)
    return int(get_cuda_native_handle(obj))


def gpu_name(device: int = 0) -> str:
    prop = cuda_call(cudart().cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    return device_name(prop.name)


def current_build_env() -> dict:
    """GPU name and TensorRT version: an engine only runs where these match."""
    import tensorrt as trt

    return {"gpu": gpu_name(0), "tensorrt": trt.__version__}


class DeviceBuffers:
    """A CUDA stream and one device allocation per tensor; host <-> device copies on it."""

    def __init__(self, specs: Iterable[TensorSpec], rt: Any = None) -> None:
        self._rt = rt or cudart()
        self.ptrs: dict[str, Any] = {}
        self.stream = cuda_call(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        try:
            for spec in specs:
                self.ptrs[spec.name] = cuda_call(self._rt.cudaMalloc(spec.nbytes), "cudaMalloc")
        except ModelFileError:
            self.free()
            raise

    @property
    def stream_handle(self) -> int:
        return native_handle(self.stream)

    def address(self, name: str) -> int:
        return native_handle(self.ptrs[name])

    def upload(self, name: str, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        result = self._rt.cudaMemcpyAsync(
            self.ptrs[name], host.ctypes.data, host.nbytes, kind, self.stream
        )
        cuda_call(result, "copy to the device")

    def download(self, name: str, host: np.ndarray) -> None:
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        result = self._rt.cudaMemcpyAsync(
            host.ctypes.data, self.ptrs[name], host.nbytes, kind, self.stream
        )
        cuda_call(result, "copy from the device")

    def synchronize(self) -> None:
        cuda_call(self._rt.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")

    def free(self) -> None:
        for ptr in self.ptrs.values():
            self._rt.cudaFree(ptr)
        self.ptrs = {}
        if self.stream is not None:
            self._rt.cudaStreamDestroy(self.stream)
            self.stream = None


class TensorRTEngine(Engine):
    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, engine, trt) -> None:
        super().__init__(path, fmt, meta)
        self._engine = engine
        self._context = engine.create_execution_context()
        self._buffers: DeviceBuffers | None = None
        try:
            self._in, self._out = self._plan(engine, trt)
        except ModelFileError as exc:
            msg = str(exc)
            raise ModelFileError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from exc
        self._buffers = DeviceBuffers((self._in, self._out))
        for spec in (self._in, self._out):
            self._context.set_tensor_address(spec.name, self._buffers.address(spec.name))

    def _plan(self, engine, trt) -> tuple[TensorSpec, TensorSpec]:
        """Check the graph against the metadata; the input and output at their run shapes."""
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        is_input = {n: engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        inputs = [n for n in names if is_input[n]]
        outputs = [n for n in names if not is_input[n]]
        check_graph(  # -1 marks a dynamic dimension
            self.path, self.meta, list(engine.get_tensor_shape(inputs[0])) if inputs else None,
            list(engine.get_tensor_shape(outputs[0])) if outputs else None, inputs=len(inputs),
        )  # fmt: skip
        if len(outputs) != 1:
            raise ModelFileError(f"the engine has {len(outputs)} outputs; expected one")
        spec_in = input_spec(
            inputs[0], engine.get_tensor_shape(inputs[0]), engine.get_tensor_dtype(inputs[0]),
            self.meta.height, self.meta.width,
        )  # fmt: skip
        if self._context.set_input_shape(spec_in.name, spec_in.shape) is False:
            raise ModelFileError(f"the engine does not take input shape {spec_in.shape}")
        spec_out = output_spec(
            outputs[0], self._context.get_tensor_shape(outputs[0]),
            engine.get_tensor_dtype(outputs[0]), spec_in.shape[0],
        )  # fmt: skip
        return spec_in, spec_out

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        if self._buffers is None:
            raise ModelFileError(f"{self.path}: the engine is closed")
        host_out = np.empty(self._out.shape, self._out.dtype)
        outs = [np.zeros((0, self._out.shape[1]), np.float32)]
        for start, stop in chunks(len(batch), self._in.shape[0]):  # built for batch 1: 4.2.2
            host_in = pad_batch(batch[start:stop], self._in)
            self._buffers.upload(self._in.name, host_in)
            if not self._context.execute_async_v3(self._buffers.stream_handle):
                raise ModelFileError(f"{self.path}: TensorRT inference failed")
            self._buffers.download(self._out.name, host_out)
            self._buffers.synchronize()  # host_in and host_out stay alive until here
            outs.append(host_out[: stop - start].astype(np.float32))
        return self.check_output(np.concatenate(outs))

    def close(self) -> None:
        if self._buffers is not None:
            self._buffers.free()
            self._buffers = None
        self._context = None
        self._engine = None


def load(path: Path, fmt: Format, device: str = "cuda", **_: object) -> Engine:
    import tensorrt as trt

    data = read_sidecar(path)
    meta = BundleMeta.from_json(data[META_KEY], origin=str(path))
    check_build_env(path, data["build_key"], current_build_env())
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise ModelFileError(f"{path}: damaged TensorRT engine (deserialisation failed)")
    return TensorRTEngine(path, fmt, meta, engine, trt)
