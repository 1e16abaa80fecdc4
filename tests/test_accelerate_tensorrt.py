"""The TensorRT backend without TensorRT: its bookkeeping, and the engine on fakes.

TensorRT and a GPU are absent here; what the device buffers must hold (shape, dtype,
bytes, batch chunks) is pure and tested directly, and ``TensorRTEngine`` runs on a
fake engine and a fake CUDA runtime whose device memory is host bytes.
"""

from __future__ import annotations

import ctypes
import enum
from types import SimpleNamespace

import numpy as np
import pytest

from wastenet.accelerate import formats
from wastenet.accelerate.backends import tensorrt_backend as trtb
from wastenet.accelerate.formats import get_format
from wastenet.classes import CLASSES
from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta

H, W = 8, 12


def test_dtypes_map_to_numpy_and_refuse_what_numpy_cannot_hold():
    assert trtb.numpy_dtype(SimpleNamespace(name="FLOAT")) == np.float32
    assert trtb.numpy_dtype("DataType.HALF") == np.float16
    assert trtb.numpy_dtype("int8") == np.int8
    with pytest.raises(ModelFileError, match="'probs' is BF16"):
        trtb.numpy_dtype(SimpleNamespace(name="BF16"), "probs")


def test_specs_chunks_and_padding():
    dyn = trtb.input_spec("input", [-1, 3, H, W], "FLOAT", H, W)
    assert dyn.shape == (1, 3, H, W) and dyn.nbytes == 3 * H * W * 4
    fixed = trtb.input_spec("input", (4, 3, H, W), "HALF", H, W)
    assert fixed.shape == (4, 3, H, W) and fixed.nbytes == 4 * 3 * H * W * 2
    out = trtb.output_spec("probs", (4, 5), "FLOAT", batch=4)
    assert out.shape == (4, 5) and out.nbytes == 80
    for bad in ((4, -1), (2, 5), (4, 5, 1)):
        with pytest.raises(ModelFileError, match="expected 4 x classes"):
            trtb.output_spec("probs", bad, "FLOAT", batch=4)
    assert trtb.chunks(5, 2) == [(0, 2), (2, 4), (4, 5)] and trtb.chunks(0, 1) == []
    x = np.ones((3, 3, H, W), np.float32)
    padded = trtb.pad_batch(x, fixed)
    assert padded.dtype == np.float16 and padded.shape == fixed.shape
    assert padded[:3].all() and not padded[3].any()
    with pytest.raises(ModelFileError, match="does not fit"):
        trtb.pad_batch(np.ones((5, 3, H, W), np.float32), fixed)


def test_build_env_device_name_and_cuda_errors(tmp_path):
    assert trtb.device_name(b"NVIDIA H200\0\0\0garbage") == "NVIDIA H200"
    assert trtb.device_name("Orin") == "Orin"
    here = {"gpu": "Orin", "tensorrt": "10.3.0"}
    trtb.check_build_env(tmp_path / "m.fp16.engine", dict(here, onnx_sha256="x"), here)
    with pytest.raises(ModelFileError, match="built for gpu 'A100'.*rebuild it"):
        trtb.check_build_env(tmp_path / "m.fp16.engine", dict(here, gpu="A100"), here)
    assert trtb.cuda_call((0, 1234), "cudaMalloc") == 1234
    assert trtb.cuda_call((0,), "cudaFree") is None
    err = enum.IntEnum("cudaError_t", {"cudaSuccess": 0, "cudaErrorMemoryAllocation": 2})
    assert trtb.cuda_call((err.cudaSuccess, 7), "cudaStreamCreate") == 7
    with pytest.raises(ModelFileError, match="cudaMalloc failed: cudaErrorMemoryAllocation"):
        trtb.cuda_call((err.cudaErrorMemoryAllocation, None), "cudaMalloc")
    with pytest.raises(ModelFileError, match="cudaFree failed: 2"):
        trtb.cuda_call((2,), "cudaFree")


def test_the_format_rows_need_tensorrt_and_cuda_python(monkeypatch):
    assert formats._importable("no_such_package.sub") is False
    monkeypatch.setattr(formats, "_importable", lambda m: m != "cuda.bindings")
    reason = get_format("tensorrt-fp16").unavailable_reason()
    assert reason == "needs the cuda-python package (pip install cuda-python)"


# --- the engine on fakes ----------------------------------------------------------------


class FakeCudart:
    """Device memory as host bytearrays; pointers are their keys."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self):
        self.mem: dict[int, bytearray] = {}
        self.next, self.streams = 0x1000, set()

    def cudaStreamCreate(self):
        self.streams.add(7)
        return (0, 7)

    def cudaStreamDestroy(self, stream):
        self.streams.discard(stream)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaMalloc(self, n):
        ptr, self.next = self.next, self.next + n
        self.mem[ptr] = bytearray(n)
        return (0, ptr)

    def cudaFree(self, ptr):
        del self.mem[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        if kind == 1:
            assert len(self.mem[dst]) == n
            self.mem[dst][:] = ctypes.string_at(src, n)
        else:
            ctypes.memmove(dst, bytes(self.mem[src][:n]), n)
        return (0,)


class FakeTrt:
    TensorIOMode = SimpleNamespace(INPUT="in", OUTPUT="out")


class FakeEngine:
    """Input (batch, 3, H, W) float32 -> output (batch, 5) float16: pixel [0, 0, :5]."""

    num_io_tensors = 2

    def __init__(self, rt: FakeCudart, batch: int):
        self.rt, self.batch = rt, batch

    def create_execution_context(self):
        return FakeContext(self)

    def get_tensor_name(self, i):
        return ("input", "probs")[i]

    def get_tensor_mode(self, name):
        return "in" if name == "input" else "out"

    def get_tensor_shape(self, name):
        return (self.batch, 3, H, W) if name == "input" else (self.batch, 5)

    def get_tensor_dtype(self, name):
        return SimpleNamespace(name="FLOAT" if name == "input" else "HALF")


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine, self.address, self.shape = engine, {}, None

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        return (self.shape[0], 5) if name == "probs" else self.shape

    def set_tensor_address(self, name, ptr):
        self.address[name] = ptr

    def execute_async_v3(self, stream):
        mem = self.engine.rt.mem
        x = np.frombuffer(bytes(mem[self.address["input"]]), np.float32).reshape(self.shape)
        mem[self.address["probs"]][:] = x[:, 0, 0, :5].astype(np.float16).tobytes()
        return True


@pytest.mark.parametrize("engine_batch", [-1, 2])
def test_engine_runs_batches_through_device_buffers(monkeypatch, tmp_path, engine_batch):
    rt = FakeCudart()
    monkeypatch.setattr(trtb, "cudart", lambda: rt)
    meta = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3)
    fmt = get_format("tensorrt-fp16")
    engine = trtb.TensorRTEngine(
        tmp_path / "m.fp16.engine", fmt, meta, FakeEngine(rt, engine_batch), FakeTrt
    )
    x = np.random.default_rng(0).random((3, 3, H, W), dtype=np.float32)
    probs = engine.predict(x)
    assert probs.dtype == np.float32 and probs.shape == (3, 5)
    np.testing.assert_allclose(probs, x[:, 0, 0, :5], atol=1e-3)  # in order, padding dropped
    assert engine.predict(x[:0]).shape == (0, 5)
    assert len(rt.mem) == 2
    engine.close()
    engine.close()
    assert rt.mem == {} and rt.streams == set()
    with pytest.raises(ModelFileError, match="closed"):
        engine.predict(x)


def test_engine_refuses_a_graph_unlike_its_metadata(monkeypatch, tmp_path):
    rt = FakeCudart()
    monkeypatch.setattr(trtb, "cudart", lambda: rt)
    meta = BundleMeta("tiny", list(CLASSES), [H + 1, W], [0.5] * 3, [0.25] * 3)
    with pytest.raises(ModelFileError, match="do not match"):
        trtb.TensorRTEngine(tmp_path / "m.fp16.engine", get_format("tensorrt-fp16"), meta,
                            FakeEngine(rt, 1), FakeTrt)  # fmt: skip
    assert rt.mem == {}  # refused before any allocation


def test_engine_names_its_file_when_a_dtype_cannot_be_held(monkeypatch, tmp_path):
    rt = FakeCudart()
    monkeypatch.setattr(trtb, "cudart", lambda: rt)
    engine = FakeEngine(rt, 1)
    monkeypatch.setattr(engine, "get_tensor_dtype", lambda name: SimpleNamespace(name="BF16"))
    meta = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3)
    path = tmp_path / "m.fp16.engine"
    with pytest.raises(ModelFileError, match=f"^{path}: 'input' is BF16"):
        trtb.TensorRTEngine(path, get_format("tensorrt-fp16"), meta, engine, FakeTrt)
