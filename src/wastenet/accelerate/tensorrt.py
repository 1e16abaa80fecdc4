"""TensorRT engines built ahead of time from the ONNX artifact (paper 3.4.2, 4.2.2).

Building takes minutes on a Jetson (the paper saw 7-minute loads), so engines are
serialised next to the ONNX file with a sidecar ``<engine>.json`` holding the bundle
metadata and the build key: GPU name, TensorRT version, source ONNX hash, precision,
workspace and shape. A build whose key matches is reused; any change rebuilds.
INT8 uses an entropy calibrator over real training images, never random data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from wastenet.accelerate.backends.tensorrt_backend import current_build_env, sidecar_path
from wastenet.accelerate.calibration import CalibrationSet
from wastenet.errors import ConfigError
from wastenet.meta import META_KEY, BundleMeta, file_sha256


def build_key(onnx_path: Path, precision: str, options: dict) -> dict:
    return {
        **current_build_env(),
        "onnx_sha256": file_sha256(onnx_path),
        "precision": precision,
        "workspace": int(options["workspace"]),
        "batch": int(options["batch"]),
        "input_shape": options.get("input_shape") or "",
    }


def cached(engine_path: Path, key: dict) -> bool:
    """True when ``engine_path`` exists and was built with exactly ``key``."""
    side = sidecar_path(engine_path)
    if not (engine_path.exists() and side.exists()):
        return False
    try:
        return json.loads(side.read_text()).get("build_key") == key
    except (OSError, json.JSONDecodeError):
        return False


def _calibrator(calib: CalibrationSet, cache_file: Path):
    import tensorrt as trt
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self._batches = calib.batches()
            self._index = 0
            self._device = None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self._index >= len(self._batches):
                return None
            self._device = torch.from_numpy(self._batches[self._index]).cuda()
            self._index += 1
            return [int(self._device.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.exists() else None

        def write_calibration_cache(self, cache) -> None:
            cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()


def _shape(meta: BundleMeta, options: dict) -> tuple[int, int, int, int]:
    text = options.get("input_shape") or ""
    if not text:
        return (int(options["batch"]), 3, meta.height, meta.width)
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError as exc:
        raise ConfigError(
            f"input_shape {text!r}: expected NxCxHxW, e.g. 1x3x{meta.height}x{meta.width}"
        ) from exc
    if len(shape) != 4 or shape[1:] != (3, meta.height, meta.width):
        raise ConfigError(
            f"input_shape {text!r} does not match the model input 3x{meta.height}x{meta.width}"
        )
    return shape  # type: ignore[return-value]


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    meta: BundleMeta,
    precision: str,
    options: dict,
    calib: CalibrationSet | None = None,
) -> dict:
    """Build (or reuse) a serialised engine; returns its build key."""
    import tensorrt as trt

    key = build_key(onnx_path, precision, options)
    if cached(engine_path, key):
        return {**key, "reused": True}
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ConfigError(f"{onnx_path}: TensorRT cannot parse it ({errors[:300]})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options["workspace"]))
    shape = _shape(meta, options)
    profile = builder.create_optimization_profile()
    profile.set_shape(network.get_input(0).name, shape, shape, shape)
    config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        if calib is None:
            raise ConfigError("tensorrt-int8 needs real calibration images (--calib-manifest)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers INT8 cannot run fall back to FP16
        config.int8_calibrator = _calibrator(calib, Path(str(engine_path) + ".calib"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"{onnx_path}: TensorRT engine build failed (see the log above)")
    tmp = engine_path.with_name(f".{engine_path.name}.tmp{os.getpid()}")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
    sidecar_path(engine_path).write_text(
        json.dumps({META_KEY: meta.to_json(), "build_key": key}, indent=2)
    )
    return {**key, "reused": False}


def build_tensorrt(exporter, fmt, opts: dict) -> tuple[Path, dict]:
    """The format table's builder of the ``tensorrt-*`` rows (their precision is the row's)."""
    out = exporter.path(fmt.name)
    calib = exporter.calibration(opts["calib_count"]) if fmt.precision == "int8" else None
    return out, build_engine(exporter.onnx(), out, exporter.meta, fmt.precision, opts, calib)
