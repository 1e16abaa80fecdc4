"""One inference protocol for every backend: ``load_engine(path).predict(batch)``.

Every engine takes a float32 NCHW batch already preprocessed with its own
``meta`` (``wastenet.preprocess``) and returns float32 probabilities (N, classes).
Backends live in ``wastenet.accelerate.backends`` and import their runtime lazily,
so the deploy side needs only numpy and the one runtime it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.accelerate.formats import Format, format_for_path
from wastenet.errors import ModelFileError
from wastenet.meta import BundleMeta


class Engine:
    """Base of every backend: holds the metadata and checks the input's shape."""

    format: Format
    meta: BundleMeta
    path: Path

    def __init__(self, path: Path, fmt: Format, meta: BundleMeta) -> None:
        self.path = Path(path)
        self.format = fmt
        self.meta = meta

    @property
    def name(self) -> str:
        return self.format.name

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """Reject a batch that does not match the model's input, with a clear message."""
        batch = np.asarray(batch)
        expected = (3, self.meta.height, self.meta.width)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise ModelFileError(
                f"{self.path}: expects input N x {expected[0]} x {expected[1]} x {expected[2]} "
                f"(NCHW, {self.meta.height}x{self.meta.width} as h x w), got shape "
                f"{tuple(batch.shape)}; preprocess with the artifact's own meta.input_size"
            )
        return np.ascontiguousarray(batch, dtype=np.float32)

    def check_output(self, out: np.ndarray) -> np.ndarray:
        """One column per label; catches a graph whose class count was dynamic at load."""
        if out.ndim != 2 or out.shape[1] != len(self.meta.labels):
            raise ModelFileError(
                f"{self.path}: the graph returned shape {tuple(out.shape)}, its metadata lists "
                f"{len(self.meta.labels)} labels; the model and its metadata do not match"
            )
        return out

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's resources; the engine cannot predict afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.path}>"


def static_dim(dim: object) -> int | None:
    """A graph dimension as an int, or None where it is dynamic (a name, -1, 0, unknown)."""
    if isinstance(dim, int | np.integer) and not isinstance(dim, bool) and dim > 0:
        return int(dim)
    return None


def _shape_text(dims: Sequence[int | None]) -> str:
    """``N x 3 x 224 x 224``: a dynamic batch reads N, any other dynamic dimension ?."""
    return " x ".join(str(d) if d else ("N" if i == 0 else "?") for i, d in enumerate(dims))


def check_graph(
    path: Path,
    meta: BundleMeta,
    input_shape: Sequence[object] | None,
    output_shape: Sequence[object] | None,
    inputs: int = 1,
) -> None:
    """Refuse, at load time, a graph that disagrees with its own metadata.

    Every backend calls this with its graph's first input and first output shape (None
    where the rank is unknown) and its number of inputs. The input must be N x 3 x H x W
    with the metadata's H and W and the output N x len(labels); a dynamic dimension
    passes (``check_batch`` and ``check_output`` guard those at run time).
    """
    if inputs != 1:
        raise ModelFileError(f"{path}: the graph has {inputs} inputs; a WasteNet model has one")
    h, w, k = meta.height, meta.width, len(meta.labels)
    if input_shape is not None:
        dims = [static_dim(d) for d in input_shape]
        want = (3, h, w)
        if len(dims) != 4 or any(d not in (None, e) for d, e in zip(dims[1:], want, strict=True)):
            raise ModelFileError(
                f"{path}: the graph's input is {_shape_text(dims)}, its metadata says "
                f"N x 3 x {h} x {w} (input_size [{h}, {w}]); the model and its metadata "
                "do not match"
            )
    if output_shape is not None:
        dims = [static_dim(d) for d in output_shape]
        if len(dims) != 2 or dims[1] not in (None, k):
            raise ModelFileError(
                f"{path}: the graph's output is {_shape_text(dims)} ({_classes(dims)}), its "
                f"metadata lists {k} labels ({', '.join(meta.labels)}); the model and its "
                "metadata do not match"
            )


def _classes(dims: list[int | None]) -> str:
    if len(dims) == 2 and dims[1] is not None:
        return f"{dims[1]} classes"
    return f"rank {len(dims)}, not N x classes"


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities from a logits-output graph (ours output probabilities, T applied)."""
    shifted = logits / temperature
    shifted = shifted - shifted.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def resolve_artifact(path: str | Path) -> Path:
    """An artifact path; a ``*_openvino`` folder resolves to the one IR ``.xml`` inside."""
    path = Path(path)
    if path.is_dir():
        xmls = sorted(path.glob("*.xml"))
        if len(xmls) != 1:
            raise ModelFileError(f"{path}: a folder must hold exactly one OpenVINO .xml model")
        return xmls[0]
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    return path


def load_engine(path: str | Path, **options: Any) -> Engine:
    """Open any artifact of the format table; the suffix picks the backend."""
    path = resolve_artifact(path)
    fmt = format_for_path(path)
    reason = fmt.unavailable_reason()
    if reason is not None:
        raise ModelFileError(f"{path}: cannot load a {fmt.name} artifact here: {reason}")
    known = {k: v for k, v in options.items() if k in fmt.options}
    unknown = sorted(set(options) - set(fmt.options) - {"device"})
    if unknown:
        raise ModelFileError(
            f"{path}: {fmt.name} does not take option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(fmt.options)) or 'none'}"
        )
    if "device" in options:
        known["device"] = options["device"]
    module = importlib.import_module(f"wastenet.accelerate.backends.{fmt.backend}")
    return module.load(path, fmt, **known)
