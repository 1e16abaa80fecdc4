"""Knowledge distillation: a student learns from the mean of its teachers' soft labels.

Hinton et al. 2015: the loss adds ``w * T^2 * KL(p_teachers^T || p_student^T)`` to the
(set-label) cross-entropy weighted ``1 - w``, where ``p^T = softmax(logits / T)`` and
``p_teachers`` is the mean over the teachers. Teachers see the very batch the student
sees (same augmentation), each normalised with its own mean and std, so a bigger or
differently-trained model (or an ensemble: compare_errors.py measures what averaging
two models buys) can be folded into the small model that ships.

A teacher is a ``.safetensors`` bundle or an exported artifact (an ONNX, an OpenVINO
model: a shipped model whose weights file is gone still teaches). An artifact outputs
calibrated probabilities ``softmax(z / T_cal)``; ``softmax(log p * T_cal / T)`` recovers
``softmax(z / T)`` exactly. ``distill_sources`` limits the teaching to the items of some
sources (a shipped model teaches what it knew while the student learns a new source
from its labels alone): the other rows keep the plain loss.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from wastenet.classes import CLASSES
from wastenet.errors import ConfigError, WasteNetError
from wastenet.preprocess import normalize
from wastenet.train.data import to_input

TINY = np.finfo(np.float32).tiny  # the smallest probability whose log is finite


def distill_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float):
    """Per row: T^2 * KL(teacher || student), both softened by T."""
    log_student = torch.log_softmax(student_logits.float() / temperature, dim=1)
    kl = torch.nn.functional.kl_div(log_student, teacher_probs.float(), reduction="none")
    return kl.sum(dim=1) * temperature**2


class _BundleTeacher:
    """A ``.safetensors`` bundle, run by torch on the training device."""

    def __init__(self, path: str, device):
        from wastenet.models import load_bundle

        model, self.meta = load_bundle(path, map_location=str(device))
        self.model = model.to(device).eval().requires_grad_(False)
        self.device = device

    def logits(self, images: torch.Tensor, autocast) -> torch.Tensor:
        x = to_input(images, self.meta.mean, self.meta.std, self.device)
        with autocast():
            return self.model(x).float()

    def close(self) -> None:
        """Nothing to release: torch frees the weights with the object."""


class _ArtifactTeacher:
    """An exported model (ONNX, OpenVINO): calibrated probabilities back to logits / T_cal."""

    def __init__(self, path: str, device):
        from wastenet.accelerate import load_engine

        try:
            self.engine = load_engine(path)
        except WasteNetError as exc:
            raise ConfigError(f"teacher {path}: {exc}") from exc
        self.meta = self.engine.meta
        self.device = device

    def logits(self, images: torch.Tensor, autocast) -> torch.Tensor:
        calibrated = self.engine.predict(normalize(images.numpy(), self.meta.mean, self.meta.std))
        logits = torch.from_numpy(np.log(np.maximum(calibrated, TINY)))
        return logits.to(self.device) * float(self.meta.temperature)

    def close(self) -> None:
        self.engine.close()


class Teachers:
    """Frozen teachers; ``probs(uint8 NHWC batch)`` is their mean softened output."""

    def __init__(self, paths: list[str], temperature: float, device):
        self.temperature = temperature
        self.models: list[_BundleTeacher | _ArtifactTeacher] = []
        for path in paths:
            if not Path(path).exists():
                raise ConfigError(f"teacher {path}: no such bundle or model file")
            kind = _BundleTeacher if Path(path).suffix == ".safetensors" else _ArtifactTeacher
            teacher = kind(path, device)
            if list(teacher.meta.labels) != list(CLASSES):
                teacher.close()
                raise ConfigError(
                    f"teacher {path}: its classes {teacher.meta.labels} are not {CLASSES}"
                )
            self.models.append(teacher)

    @torch.no_grad()  # not inference_mode: the loss keeps these probabilities for backward
    def probs(self, images: torch.Tensor, autocast) -> torch.Tensor:
        total = None
        for teacher in self.models:
            p = torch.softmax(teacher.logits(images, autocast) / self.temperature, dim=1)
            total = p if total is None else total + p
        return total / len(self.models)

    def close(self) -> None:
        for teacher in self.models:
            teacher.close()
