"""Read an ONNX file's parameter count and metadata without torch, onnx or a runtime.

The protobuf is walked directly (a few dozen lines), so the report and ``verify`` read
what an ONNX file says about itself on a machine with nothing but the standard library.
"""

from __future__ import annotations

from pathlib import Path

from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes, start: int, end: int):
    """(field number, wire type, value or (start, end) of a length-delimited field)."""
    i = start
    while i < end:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            yield number, wire, value
        elif wire == 2:
            length, i = _varint(buf, i)
            yield number, wire, (i, i + length)
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read the ONNX file ({exc.strerror or exc})") from exc


def count_onnx_parameters(path: str | Path) -> int:
    """Elements of every initializer of an ONNX graph (ModelProto.graph = 7,
    GraphProto.initializer = 5, TensorProto.dims = 1), read from the protobuf directly."""
    buf = _read(path)
    total = 0
    try:
        for number, wire, graph in _fields(buf, 0, len(buf)):
            if number != 7 or wire != 2:
                continue
            for n2, w2, tensor in _fields(buf, *graph):
                if n2 != 5 or w2 != 2:
                    continue
                dims: list[int] = []
                for n3, w3, value in _fields(buf, *tensor):
                    if n3 == 1 and w3 == 0:
                        dims.append(value)
                    elif n3 == 1 and w3 == 2:
                        i, end = value
                        while i < end:
                            d, i = _varint(buf, i)
                            dims.append(d)
                count = 1
                for d in dims:
                    count *= d
                total += count
    except (IndexError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from exc
    return total


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """ModelProto.metadata_props (field 14: key = 1, value = 2) of an ONNX file; a file
    that cannot be read or parsed raises ``ModelFileError``."""
    buf = _read(path)
    props = {}
    try:
        for number, wire, entry in _fields(buf, 0, len(buf)):
            if number == 14 and wire == 2:
                kv = {
                    n: bytes(buf[a:b]).decode("utf-8", "replace")
                    for n, w, (a, b) in ((n, w, v) for n, w, v in _fields(buf, *entry) if w == 2)
                }
                props[kv.get(1, "")] = kv.get(2, "")
    except (IndexError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from exc
    return props


def read_onnx_meta(path: str | Path) -> BundleMeta:
    """The WasteNet metadata of an ONNX file (no session is opened)."""
    metadata = read_onnx_metadata(path)
    if META_KEY not in metadata:
        raise ModelFileError(f"{path}: an ONNX file without WasteNet metadata")
    return BundleMeta.from_json(metadata[META_KEY], origin=str(path))
