"""The model bundle's self-description, readable without torch.

Every checkpoint (``.safetensors``) and every exported artifact (ONNX, OpenVINO,
TensorRT) carries one ``BundleMeta`` as JSON under the key ``wastenet``, so the
runtime preprocesses exactly as training did (DESIGN.md pattern 4).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import NoReturn

from wastenet import __version__
from wastenet.classes import CONFIDENCE_THRESHOLD
from wastenet.errors import ModelFileError

META_KEY = "wastenet"
FORMAT_VERSION = 1


@dataclass
class BundleMeta:
    architecture: str
    labels: list[str]
    input_size: list[int]  # [height, width]
    mean: list[float]
    std: list[float]
    resolution_pct: float = 75.0
    temperature: float = 1.0  # probabilities = softmax(logits / T); wastenet calibrate fits T
    # The "not sure" rule (wastenet.sureness): below this sureness the bin and evaluate
    # answer "not sure" (the card's default for --threshold). The sureness is the top
    # probability (0.7: "70 % sure") or the certainty, at not_sure_temperature where set
    not_sure_below: float = CONFIDENCE_THRESHOLD
    not_sure_score: str = "top_probability"
    not_sure_temperature: float | None = None
    manifest_hash: str | None = None
    source_hash: str | None = None  # hash of the weights an artifact was made from
    metrics: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    created: str = ""
    wastenet_version: str = __version__
    format_version: int = FORMAT_VERSION

    @property
    def height(self) -> int:
        return int(self.input_size[0])

    @property
    def width(self) -> int:
        return int(self.input_size[1])

    @property
    def trained_sources(self) -> list[str] | None:
        """The manifest sources the model was trained on (None: every source, or unknown).
        Steps that still fit something to data (INT8 calibration and its accuracy control)
        use only these, so a source held out of training stays unseen."""
        sources = self.train_config.get("sources")
        return list(sources) if sources else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "model") -> BundleMeta:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{origin}: its WasteNet metadata is not valid JSON") from exc
        return cls.from_dict(data, origin)

    @classmethod
    def from_dict(cls, data: object, origin: str = "model") -> BundleMeta:
        """Validated metadata: every field of the right type and in range, or one
        ``ModelFileError`` naming ``origin`` and the field. Unknown keys are ignored."""
        if not isinstance(data, dict):
            raise ModelFileError(f"{origin}: its WasteNet metadata is not an object")
        required = {"architecture", "labels", "input_size", "mean", "std"}
        missing = required - data.keys()
        if missing:
            raise ModelFileError(f"{origin}: metadata lacks {', '.join(sorted(missing))}")
        version = data.get("format_version", FORMAT_VERSION)
        if not _is_int(version) or version < 1:
            _bad(origin, "format_version", "a positive integer", version)
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{origin}: made by a newer WasteNet (bundle format "
                f"{version}); upgrade wastenet to read it"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, check in _CHECKS.items():
            if name in values:
                values[name] = check(origin, name, values[name])
        return cls(**values)


MIN_INPUT_SIDE = 8  # pixels; smaller or larger sides are damaged metadata, not a model
MAX_INPUT_SIDE = 4096


def _bad(origin: str, name: str, want: str, value: object) -> NoReturn:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    raise ModelFileError(f"{origin}: metadata {name} must be {want}, got {shown}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(origin: str, name: str, value: object) -> str:
    if not isinstance(value, str):
        _bad(origin, name, "a string", value)
    return value


def _name(origin: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        _bad(origin, name, "a non-empty string", value)
    return value


def _optional_text(origin: str, name: str, value: object) -> str | None:
    return None if value is None else _text(origin, name, value)


def _mapping(origin: str, name: str, value: object) -> dict:
    if not isinstance(value, dict):
        _bad(origin, name, "an object", value)
    return value


def _positive(origin: str, name: str, value: object) -> float:
    if not _is_number(value) or value <= 0:
        _bad(origin, name, "a positive finite number", value)
    return float(value)


def _optional_positive(origin: str, name: str, value: object) -> float | None:
    return None if value is None else _positive(origin, name, value)


def _not_sure_score(origin: str, name: str, value: object) -> str:
    from wastenet.sureness import SCORES

    if value not in SCORES:
        _bad(origin, name, f"one of {', '.join(SCORES)}", value)
    return str(value)


def _share(origin: str, name: str, value: object) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        _bad(origin, name, "a number in [0, 1]", value)
    return float(value)


def _labels(origin: str, name: str, value: object) -> list[str]:
    want = "a non-empty list of unique, non-empty strings"
    if not isinstance(value, list) or not value:
        _bad(origin, name, want, value)
    if not all(isinstance(v, str) and v.strip() for v in value):
        _bad(origin, name, want, value)
    if len(set(value)) != len(value):
        dupes = sorted({v for v in value if value.count(v) > 1})
        repeated = ", ".join(repr(d) for d in dupes)
        raise ModelFileError(f"{origin}: metadata labels must be unique; {repeated} repeats")
    return list(value)


def _input_size(origin: str, name: str, value: object) -> list[int]:
    want = f"[height, width], two integers in [{MIN_INPUT_SIDE}, {MAX_INPUT_SIDE}]"
    if not isinstance(value, list) or len(value) != 2 or not all(_is_int(v) for v in value):
        _bad(origin, name, want, value)
    if not all(MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in value):
        _bad(origin, name, want, value)
    return list(value)


def _triple(origin: str, name: str, value: object, positive: bool = False) -> list[float]:
    want = "3 finite numbers" + (" above 0" if positive else "")
    if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) for v in value):
        _bad(origin, name, want, value)
    if positive and not all(v > 0 for v in value):
        _bad(origin, name, want, value)
    return [float(v) for v in value]


_CHECKS = {
    "architecture": _name,
    "labels": _labels,
    "input_size": _input_size,
    "mean": _triple,
    "std": lambda origin, name, value: _triple(origin, name, value, positive=True),
    "resolution_pct": _positive,
    "temperature": _positive,
    "not_sure_below": _share,
    "not_sure_score": _not_sure_score,
    "not_sure_temperature": _optional_positive,
    "manifest_hash": _optional_text,
    "source_hash": _optional_text,
    "metrics": _mapping,
    "train_config": _mapping,
    "created": _text,
    "wastenet_version": _text,
}


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors_header(path: str | Path) -> dict:
    """The JSON header of a safetensors file (every tensor's dtype, shape and offsets, and
    ``__metadata__``), parsed without torch or safetensors: the one reader of it."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            if len(head) != 8:
                raise ModelFileError(f"{path}: too short to be a model bundle")
            (length,) = struct.unpack("<Q", head)
            if length > 100_000_000 or length > path.stat().st_size - 8:
                raise ModelFileError(f"{path}: not a safetensors model bundle (bad header)")
            header = json.loads(handle.read(length))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path}: not a safetensors model bundle (damaged header)") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: not a safetensors model bundle (damaged header)")
    return header


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file."""
    return dict(read_safetensors_header(path).get("__metadata__") or {})


def read_bundle_meta(path: str | Path) -> BundleMeta:
    """Metadata of a ``.safetensors`` bundle; no weights are loaded."""
    metadata = read_safetensors_metadata(path)
    if META_KEY not in metadata:
        raise ModelFileError(f"{path}: a safetensors file without WasteNet metadata")
    return BundleMeta.from_json(metadata[META_KEY], origin=str(path))


def safetensors_parameter_count(path: str | Path) -> int | None:
    """Parameter elements of a safetensors bundle from its header alone (no torch):
    BatchNorm running statistics left out, as torch counts parameters; None if unreadable."""
    try:
        header = read_safetensors_header(path)
    except ModelFileError:
        return None
    total = 0
    for name, info in header.items():
        if name == "__metadata__" or not isinstance(info, dict):
            continue
        if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
            continue  # buffers, not parameters
        count = 1
        for dim in info.get("shape", []):
            count *= int(dim)
        total += count
    return total
