"""Knowledge distillation: a student learns from the mean of its teachers' soft labels.

Hinton et al. 2015: the loss adds ``w * T^2 * KL(p_teachers^T || p_student^T)`` to the
(set-label) cross-entropy weighted ``1 - w``, where ``p^T = softmax(logits / T)`` and
``p_teachers`` is the mean over the teachers. Teachers see the very batch the student
sees (same augmentation), each normalised with its own mean and std, so a bigger or
differently-trained model (or an ensemble: compare_errors.py measures what averaging
two models buys) can be folded into the small model that ships.
"""

from __future__ import annotations

from pathlib import Path

import torch

from wastenet.classes import CLASSES
from wastenet.errors import ConfigError
from wastenet.train.data import to_input


def distill_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float):
    """Mean over the batch of T^2 * KL(teacher || student), both softened by T."""
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=1)
    kl = torch.nn.functional.kl_div(log_student, teacher_probs.float(), reduction="batchmean")
    return kl * temperature**2


class Teachers:
    """Frozen teacher bundles; ``probs(uint8 NHWC batch)`` is their mean softened output."""

    def __init__(self, paths: list[str], temperature: float, device):
        from wastenet.models import load_bundle

        self.temperature = temperature
        self.models = []
        for path in paths:
            if not Path(path).exists():
                raise ConfigError(f"teacher {path}: no such bundle")
            model, meta = load_bundle(path, map_location=str(device))
            if list(meta.labels) != list(CLASSES):
                raise ConfigError(f"teacher {path}: its classes {meta.labels} are not {CLASSES}")
            model = model.to(device).eval().requires_grad_(False)
            self.models.append((model, meta))
        self.device = device

    @torch.no_grad()  # not inference_mode: the loss keeps these probabilities for backward
    def probs(self, images: torch.Tensor, autocast) -> torch.Tensor:
        total = None
        for model, meta in self.models:
            x = to_input(images, meta.mean, meta.std, self.device)
            with autocast():
                logits = model(x).float()
            p = torch.softmax(logits / self.temperature, dim=1)
            total = p if total is None else total + p
        return total / len(self.models)
