"""The one format table: it drives `wastenet export`, the loader and the benchmarks.

Each row names a format, the file suffix that identifies its artifacts, its precision,
the backend module that loads it, the devices it runs on, the options it accepts
(with defaults) and the builder that makes it. The exporter validates options against
the row and calls the row's builder (a name here: the build modules are imported by
the exporter alone, so this table stays deploy-side); ``load_engine`` picks the backend
from the row whose suffix the artifact's name ends with (longest suffix first, so
``.int8.onnx`` wins over ``.onnx``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wastenet.errors import ConfigError, ModelFileError

CALIB_METHODS = ("minmax", "entropy", "percentile")

_COMMON = {"threads": 0}  # 0 = the runtime's default
_CALIB = {
    "calib_count": 200,
    "calib_method": "minmax",
    "exclude": "",  # comma-separated node names, or "auto", "first", "last", "first,last"
}
_TRT = {"workspace": 1 << 25, "batch": 1, "input_shape": ""}  # paper 4.2.2: 1<<25, batch 1
_TRT_REQUIRES = ("tensorrt", "cuda.bindings")  # cuda-python: the engine's device buffers
PIP_NAMES = {"cuda.bindings": "cuda-python"}  # where an importable name is not the pip name


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    precision: str
    backend: str  # module under wastenet.accelerate.backends
    devices: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # importable packages the backend needs at load time
    needs_gpu: bool = False
    note: str = ""
    # ``module:function`` under wastenet.accelerate that builds the artifact (build side,
    # imported by the exporter only); None: the bundle itself is the artifact
    builder: str | None = None

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults merged with ``options``; an option this row does not know is an error."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(sorted(self.options)) or "none"
            raise ConfigError(
                f"format {self.name}: unknown option(s) {', '.join(unknown)}; allowed: {allowed}"
            )
        merged = dict(self.options)
        for key, value in options.items():
            default = self.options[key]
            if value is not None and isinstance(default, int) and not isinstance(value, int):
                try:
                    value = int(value)
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"format {self.name}: {key} must be an integer") from exc
            merged[key] = value if value is not None else default
        method = merged.get("calib_method")
        if method is not None and method not in CALIB_METHODS:
            raise ConfigError(
                f"format {self.name}: calib_method {method!r} is not one of {', '.join(CALIB_METHODS)}"
            )
        return merged

    def unavailable_reason(self) -> str | None:
        """Why this row cannot run on this machine, or None when it can."""
        missing = [PIP_NAMES.get(pkg, pkg) for pkg in self.requires if not _importable(pkg)]
        if missing:
            return f"needs the {', '.join(missing)} package (pip install {' '.join(missing)})"
        if self.needs_gpu and not _has_nvidia_gpu():
            return "needs an NVIDIA GPU (none found)"
        return None


def _importable(module: str) -> bool:
    """True when ``module`` can be imported; a dotted name whose parent is missing is not."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()


FORMATS: tuple[Format, ...] = (
    Format("torch", ".safetensors", "fp32", "torch_backend", ("cpu", "cuda"), dict(_COMMON),
           requires=("torch", "timm"), note="PyTorch eager, the unaccelerated baseline"),
    Format("onnx", ".onnx", "fp32", "onnx_backend", ("cpu", "cuda"), dict(_COMMON),
           requires=("onnxruntime",), builder="onnx_export:build_onnx"),
    Format("onnx-fp16", ".fp16.onnx", "fp16", "onnx_backend", ("cpu", "cuda"), dict(_COMMON),
           requires=("onnxruntime",), note="CPU runs it through inserted casts: slow there",
           builder="onnx_export:build_fp16"),
    Format("ort-int8", ".int8.onnx", "int8", "onnx_backend", ("cpu",),
           {**_COMMON, **_CALIB}, requires=("onnxruntime",),
           note="static QDQ, per-channel weights, calibrated on real train images",
           builder="quantize:build_ort_int8"),
    Format("openvino", ".xml", "fp32", "openvino_backend", ("cpu", "gpu", "npu"),
           dict(_COMMON), requires=("openvino",), builder="openvino_export:build_openvino"),
    Format("openvino-int8", ".int8.xml", "int8", "openvino_backend", ("cpu", "gpu", "npu"),
           {**_COMMON, **_CALIB, "max_drop": None}, requires=("openvino",),
           note="NNCF post-training quantisation, accuracy-controlled on the val split with "
                "max_drop (points); QDQ ONNX through OpenVINO when nncf is absent",
           builder="openvino_export:build_openvino_int8"),
    Format("tensorrt-fp32", ".fp32.engine", "fp32", "tensorrt_backend", ("cuda",),
           dict(_TRT), requires=_TRT_REQUIRES, needs_gpu=True, builder="tensorrt:build_tensorrt"),
    Format("tensorrt-fp16", ".fp16.engine", "fp16", "tensorrt_backend", ("cuda",),
           dict(_TRT), requires=_TRT_REQUIRES, needs_gpu=True, builder="tensorrt:build_tensorrt"),
    Format("tensorrt-int8", ".int8.engine", "int8", "tensorrt_backend", ("cuda",),
           {**_TRT, "calib_count": 200}, requires=_TRT_REQUIRES, needs_gpu=True,
           builder="tensorrt:build_tensorrt"),
)  # fmt: skip


def get_format(name: str) -> Format:
    for fmt in FORMATS:
        if fmt.name == name:
            return fmt
    raise ConfigError(
        f"unknown format {name!r}; known: {', '.join(f.name for f in FORMATS)} "
        "(see wastenet export --list)"
    )


def format_for_path(path: str | Path) -> Format:
    """The row whose suffix ends the artifact's file name (longest suffix wins)."""
    name = Path(path).name.lower()
    for fmt in sorted(FORMATS, key=lambda f: len(f.suffix), reverse=True):
        if name.endswith(fmt.suffix):
            return fmt
    suffixes = ", ".join(f.suffix for f in FORMATS)
    raise ModelFileError(f"{path}: unknown model file type (known suffixes: {suffixes})")


def artifact_path(out_dir: Path, stem: str, fmt: Format) -> Path:
    return Path(out_dir) / f"{stem}{fmt.suffix}"


def format_table() -> str:
    """The table as Markdown, with each row's availability here."""
    lines = [
        "| format | suffix | precision | backend | devices | options (defaults) | here |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in FORMATS:
        opts = ", ".join(f"{k}={v!r}" for k, v in f.options.items()) or "-"
        reason = f.unavailable_reason()
        here = "yes" if reason is None else f"skipped: {reason}"
        lines.append(
            f"| {f.name} | `{f.suffix}` | {f.precision} | {f.backend} | "
            f"{'/'.join(f.devices)} | {opts} | {here} |"
        )
    return "\n".join(lines)
