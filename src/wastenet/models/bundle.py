"""The model bundle: safetensors weights plus ``BundleMeta`` under the key ``wastenet``.

One file carries everything needed to rebuild and use the model (architecture, labels,
input size, normalisation). Loading never unpickles: safetensors holds tensors only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from wastenet.errors import ModelFileError, WasteNetError
from wastenet.meta import META_KEY, BundleMeta, file_sha256, read_bundle_meta
from wastenet.models.registry import create_model

if TYPE_CHECKING:
    import torch


def count_parameters(model: torch.nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def bundle_hash(path: str | Path) -> str:
    """sha256 of the bundle file: the ``source_hash`` of artifacts made from it."""
    return file_sha256(path)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The plain model inside DDP / DataParallel / torch.compile wrappers (their keys differ)."""
    import torch

    wrappers = (torch.nn.parallel.DistributedDataParallel, torch.nn.DataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def save_bundle(model: torch.nn.Module, meta: BundleMeta, path: str | Path) -> Path:
    """Write ``model``'s weights and ``meta`` to ``path`` atomically (a crash leaves no half file)."""
    from safetensors.torch import save_file

    path = Path(path)
    model = unwrap_model(model)
    heads = getattr(model, "num_classes", None)
    if heads is not None and heads != len(meta.labels):
        raise ValueError(f"model has {heads} outputs but meta lists {len(meta.labels)} labels")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(state, str(tmp), metadata={META_KEY: meta.to_json()})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_bundle(path: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, BundleMeta]:
    """Rebuild the model a bundle describes and load its weights strictly; eval mode."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model bundle")
    meta = read_bundle_meta(path)
    try:
        model = create_model(meta.architecture, len(meta.labels), pretrained=False)
    except WasteNetError as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
    try:
        state = load_file(str(path), device=str(map_location))
    except Exception as exc:  # SafetensorError and friends: truncated or corrupt data
        raise ModelFileError(f"{path}: damaged model bundle ({_first_line(exc)})") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{path}: its weights do not fit architecture {meta.architecture!r} with "
            f"{len(meta.labels)} classes ({_first_line(exc, skip_header=True)})"
        ) from exc
    return model.to(map_location).eval(), meta


def _first_line(exc: Exception, skip_header: bool = False) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if skip_header and len(lines) > 1:
        lines = lines[1:]
    return (lines[0] if lines else type(exc).__name__)[:200]
