"""PyTorch eager FP32: the unaccelerated baseline, and the one wrapper of an in-memory
torch model (training's evaluation, calibration and export's checks use it too)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine
from wastenet.accelerate.formats import Format, get_format
from wastenet.meta import BundleMeta

CHUNK = 32  # images per forward pass: a whole split in one call would not fit in memory


def resolve_device(device: str | None):
    """A torch device; ``None`` or ``"auto"`` picks CUDA where there is one."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class TorchEngine(Engine):
    def __init__(
        self, path: Path, fmt: Format, meta: BundleMeta, model, device: str | None = "cpu"
    ):
        super().__init__(path, fmt, meta)
        import torch

        self._torch = torch
        self._device = resolve_device(device)
        self._model = model.eval().to(self._device)

    @classmethod
    def from_model(
        cls, model, meta: BundleMeta, path: str | Path = "<memory>", device: str | None = "cpu"
    ) -> TorchEngine:
        """Wrap an in-memory model (training, calibration, export's checks)."""
        return cls(Path(path), get_format("torch"), meta, model, device)

    @property
    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self._model.parameters()))

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        torch = self._torch
        outs = []
        with torch.inference_mode():
            for start in range(0, len(batch), CHUNK):
                x = torch.from_numpy(batch[start : start + CHUNK]).to(self._device)
                logits = self._model(x).float() / self.meta.temperature
                outs.append(torch.softmax(logits, dim=1).cpu().numpy())
        if not outs:
            return np.zeros((0, len(self.meta.labels)), np.float32)
        return np.concatenate(outs).astype(np.float32)

    def close(self) -> None:
        self._model = None


def load(path: Path, fmt: Format, threads: int = 0, device: str = "cpu", **_: object) -> Engine:
    import torch

    from wastenet.models import load_bundle

    if threads:
        torch.set_num_threads(int(threads))
    model, meta = load_bundle(path)
    return TorchEngine(path, fmt, meta, model, device)
