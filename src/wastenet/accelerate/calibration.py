"""INT8 calibration data: real training images through the bundle's exact preprocessing.

Never random noise: calibrating on noise (the paper's acceleration script, and
jetson-inference's fallback) sets activation ranges no real photo produces, and INT8
accuracy collapses. Images come from a split manifest (train split by default) or a
folder of images; a fixed seed picks the same ``count`` images every time.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from wastenet.errors import ConfigError
from wastenet.imageio import read_rgb
from wastenet.meta import BundleMeta
from wastenet.preprocess import preprocess

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def images_from_manifest(
    manifest_path: str | Path, split: str = "train", sources: list[str] | None = None
) -> list[Path]:
    """The split's images, of ``sources`` only when given (a model's training sources)."""
    from wastenet.data.manifest import load_split

    return [Path(item.path) for item in load_split(manifest_path, split, sources, "calibrate")]


def images_from_folder(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such calibration image folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"{folder}: holds no images to calibrate on")
    return files


def pick(paths: list[Path], count: int, seed: int = 0) -> list[Path]:
    """``count`` paths spread over the list (all of them when there are fewer)."""
    if count <= 0:
        raise ConfigError(f"calibration count must be positive, got {count}")
    paths = list(paths)
    random.Random(seed).shuffle(paths)
    return sorted(paths[:count])


class CalibrationSet:
    """Preprocessed calibration batches (1x3xHxW float32), decoded once and reused."""

    def __init__(self, paths: list[Path], meta: BundleMeta) -> None:
        if not paths:
            raise ConfigError("INT8 calibration needs at least one real image")
        self.paths = list(paths)
        self.meta = meta
        self._batches: list[np.ndarray] | None = None

    @classmethod
    def from_source(
        cls,
        meta: BundleMeta,
        manifest: str | Path | None = None,
        folder: str | Path | None = None,
        count: int = 200,
        split: str = "train",
    ) -> CalibrationSet:
        if manifest is not None:
            paths = images_from_manifest(manifest, split, meta.trained_sources)
        elif folder is not None:
            paths = images_from_folder(folder)
        else:
            raise ConfigError(
                "INT8 formats calibrate on real training images: give --calib-manifest "
                "MANIFEST (train split) or --calib-images FOLDER"
            )
        return cls(pick(paths, count), meta)

    def batches(self) -> list[np.ndarray]:
        if self._batches is None:
            size = (self.meta.height, self.meta.width)
            self._batches = [
                preprocess(read_rgb(p), size, self.meta.mean, self.meta.std) for p in self.paths
            ]
        return self._batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.batches())

    def __len__(self) -> int:
        return len(self.paths)

    def stacked(self) -> np.ndarray:
        return np.concatenate(self.batches())
