"""PyTorch eager FP32 from the ``.safetensors`` bundle: the unaccelerated baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine
from wastenet.accelerate.formats import Format, get_format
from wastenet.meta import BundleMeta


class TorchEngine(Engine):
    def __init__(self, path: Path, fmt: Format, meta: BundleMeta, model, device: str = "cpu"):
        super().__init__(path, fmt, meta)
        import torch

        self._torch = torch
        self._device = torch.device(device)
        self._model = model.eval().to(self._device)

    @classmethod
    def from_model(cls, model, meta: BundleMeta, path: str | Path = "<memory>") -> TorchEngine:
        """Wrap an in-memory model (export and verify use it before a bundle exists)."""
        return cls(Path(path), get_format("torch"), meta, model)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        batch = self.check_batch(batch)
        torch = self._torch
        with torch.inference_mode():
            logits = self._model(torch.from_numpy(batch).to(self._device))
            logits = logits.float() / self.meta.temperature
            return torch.softmax(logits, dim=1).cpu().numpy().astype(np.float32)

    def close(self) -> None:
        self._model = None


def load(path: Path, fmt: Format, threads: int = 0, device: str = "cpu", **_: object) -> Engine:
    import torch

    from wastenet.models import load_bundle

    if threads:
        torch.set_num_threads(int(threads))
    model, meta = load_bundle(path)
    return TorchEngine(path, fmt, meta, model, device)
