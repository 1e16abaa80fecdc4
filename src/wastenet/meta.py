"""The model bundle's self-description, readable without torch.

Every checkpoint (``.safetensors``) and every exported artifact (ONNX, OpenVINO,
TensorRT) carries one ``BundleMeta`` as JSON under the key ``wastenet``, so the
runtime preprocesses exactly as training did (DESIGN.md pattern 4).
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from wastenet import __version__
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

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "model") -> BundleMeta:
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ModelFileError(f"{origin}: its WasteNet metadata is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ModelFileError(f"{origin}: its WasteNet metadata is not an object")
        known = {f.name for f in fields(cls)}
        required = {"architecture", "labels", "input_size", "mean", "std"}
        missing = required - data.keys()
        if missing:
            raise ModelFileError(f"{origin}: metadata lacks {', '.join(sorted(missing))}")
        if int(data.get("format_version", 1)) > FORMAT_VERSION:
            raise ModelFileError(
                f"{origin}: made by a newer WasteNet (bundle format "
                f"{data['format_version']}); upgrade wastenet to read it"
            )
        meta = cls(**{k: v for k, v in data.items() if k in known})
        if len(meta.input_size) != 2 or len(meta.mean) != 3 or len(meta.std) != 3:
            raise ModelFileError(f"{origin}: metadata has a malformed input size, mean or std")
        if not float(meta.temperature) > 0:
            raise ModelFileError(f"{origin}: metadata temperature must be positive")
        return meta


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file, parsed without torch or safetensors."""
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
    return dict(header.get("__metadata__") or {})


def read_bundle_meta(path: str | Path) -> BundleMeta:
    """Metadata of a ``.safetensors`` bundle; no weights are loaded."""
    metadata = read_safetensors_metadata(path)
    if META_KEY not in metadata:
        raise ModelFileError(f"{path}: a safetensors file without WasteNet metadata")
    return BundleMeta.from_json(metadata[META_KEY], origin=str(path))
