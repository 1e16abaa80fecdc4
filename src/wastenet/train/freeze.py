"""Freezing by backbone "units" (stem, each block, head) for the benchmark's frozen phase,
gradual unfreezing from the top, and keeping the first blocks frozen on slow CPUs."""

from __future__ import annotations

import torch
from torch import nn

CONTAINERS = ("blocks", "features", "layers", "stages")


def backbone_units(model: nn.Module) -> list[nn.Module]:
    """Top-level children in forward order, with block containers expanded one level.

    The classifier (timm's ``get_classifier()``) is excluded: it is always trained.
    """
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    units: list[nn.Module] = []
    for name, child in model.named_children():
        if child is classifier:
            continue
        if name in CONTAINERS and isinstance(child, nn.Sequential):
            units.extend(child.children())
        else:
            units.append(child)
    return [u for u in units if any(True for _ in u.parameters())]


def set_trainable_units(model: nn.Module, first_trainable: int) -> int:
    """Freeze units before index ``first_trainable``; returns the trainable parameter count."""
    units = backbone_units(model)
    for i, unit in enumerate(units):
        for p in unit.parameters():
            p.requires_grad_(i >= first_trainable)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def frozen_batchnorm_to_eval(model: nn.Module) -> None:
    """BatchNorm inside frozen units keeps its ImageNet statistics (call after .train())."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def first_trainable_unit(
    model: nn.Module, freeze: str, epoch_in_phase: int, phase_epochs: int, keep_frozen: int
) -> int:
    """Index of the first trainable unit for a phase's freeze policy at an epoch."""
    n = len(backbone_units(model))
    if freeze == "backbone":
        return n
    if freeze == "gradual":
        per_epoch = max(1, -(-n // max(1, phase_epochs)))
        return max(keep_frozen, n - per_epoch * (epoch_in_phase + 1))
    return min(keep_frozen, n)


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]
