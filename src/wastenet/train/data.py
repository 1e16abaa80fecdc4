"""Training batches from the decoded image cache: deterministic per (seed, epoch, index).

Every sample's augmentation draws from its own RNG seeded by (seed, epoch, index), and
each epoch's order from (seed, epoch), so a resumed run sees exactly the batches an
uninterrupted one would, with any number of loader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from wastenet.classes import CLASSES
from wastenet.data.augment import random_flips
from wastenet.train.loss import labels_to_mask

AugmentFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class CachedImages(torch.utils.data.Dataset):
    """(uint8 HWC image, class-set mask) pairs, augmented as the phase asks.

    ``rows`` maps each sample index to an item (default: one sample per item); a row that
    appears twice is two samples with their own augmentation draws.
    """

    def __init__(self, items: Sequence, cache, augment: AugmentFn | None, seed: int = 0, rows=None):
        self.items = list(items)
        self.cache = cache
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.mode = "train"  # train | light | none
        self.masks = labels_to_mask([it.labels for it in self.items], CLASSES)
        self.rows = np.arange(len(self.items)) if rows is None else np.asarray(rows, dtype=int)
        self.labelled_rows = np.nonzero(self.masks.any(dim=1).numpy())[0]

    def __len__(self) -> int:
        return len(self.rows)

    def item(self, index: int):
        return self.items[self.rows[index]]

    def _companions(self, rng: np.random.Generator, most: int = 2) -> list[np.ndarray]:
        """One or two other labelled training images (same size), for the clutter step."""
        labelled = self.labelled_rows
        if len(labelled) < 2:
            return []
        picks = rng.choice(labelled, size=int(rng.integers(1, most + 1)), replace=False)
        return [np.asarray(self.cache[int(r)]) for r in picks]

    def __getitem__(self, index: int):
        row = int(self.rows[index])
        img = np.asarray(self.cache[row])
        if self.mode != "none":
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.mode == "train" and self.augment is not None:
                if getattr(self.augment, "wants_companions", False):
                    img = self.augment(img, rng, self._companions(rng))
                else:
                    img = self.augment(img, rng)
            else:
                img = random_flips(img, rng)
        return torch.from_numpy(np.array(img, order="C")), self.masks[row]


def weighted_rows(items: Sequence, weights: dict[str, float] | None, seed: int) -> np.ndarray:
    """One epoch's item rows: each source's items ``weights[source]`` times (default 1).

    A fractional weight adds that share of the source's items once more, chosen once
    from ``seed`` (the same items every epoch).
    """
    rows = np.arange(len(items))
    if not weights:
        return rows
    sources = np.array([it.source for it in items])
    rng = np.random.default_rng([seed, 11])
    parts = []
    for source in dict.fromkeys(sources.tolist()):
        own = rows[sources == source]
        weight = float(weights.get(source, 1.0))
        whole = int(weight)
        parts.extend([own] * whole)
        extra = round((weight - whole) * len(own))
        if extra:
            parts.append(np.sort(rng.permutation(own)[:extra]))
    return np.sort(np.concatenate(parts))


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, shuffle: bool, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """This rank's batches of sample indices for one epoch."""
    order = np.arange(n)
    if shuffle:
        order = np.random.default_rng([seed, epoch, 7]).permutation(n)
    if shuffle and world > 1:  # every rank must take the same number of steps under DDP
        order = order[: len(order) - len(order) % world]
    order = order[rank::world]
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]


def collate(batch):
    images = torch.stack([b[0] for b in batch])  # N, H, W, C uint8
    masks = torch.stack([b[1] for b in batch])
    return images, masks


def to_input(images: torch.Tensor, mean, std, device) -> torch.Tensor:
    """uint8 NHWC -> normalised float NCHW in channels-last memory (no copy of layout)."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    mean_t = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, 3, 1, 1)
    return (x - mean_t) / std_t


def make_loader(dataset: CachedImages, batches: list[list[int]], workers: int):
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
        persistent_workers=False,
    )
