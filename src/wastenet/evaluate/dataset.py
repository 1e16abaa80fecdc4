"""The edge between evaluation and the data stage: manifest items in, images out.

Evaluation needs only ``item.path``, ``item.source`` and ``item.labels`` (a tuple of
class names), plus ``Manifest.items(split=...)`` and ``Manifest.ood_items(...)``;
anything shaped like that works, which keeps the metrics testable on their own.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.errors import WasteNetError
from wastenet.imageio import read_rgb
from wastenet.preprocess import fit_image


def load_manifest(path: str | Path) -> Any:
    """The data stage's manifest; a missing, foreign or damaged file is a WasteNetError."""
    from wastenet.data.manifest import load_manifest as data_load_manifest

    try:
        return data_load_manifest(path)
    except WasteNetError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WasteNetError(f"{path}: not a WasteNet split manifest ({exc})") from exc


def limit_items(items: Sequence[Any], limit: int | None) -> list[Any]:
    """At most ``limit`` items per source, taken round-robin over labels (stays balanced)."""
    if not limit:
        return list(items)
    by_source: dict[str, dict[tuple, list]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        by_source[item.source][tuple(item.labels)].append(item)
    chosen: list[Any] = []
    for groups in by_source.values():
        queues = [list(v) for _, v in sorted(groups.items())]
        taken = 0
        while taken < limit and any(queues):
            for q in queues:
                if q and taken < limit:
                    chosen.append(q.pop(0))
                    taken += 1
    return chosen


def load_images(
    items: Sequence[Any], size_hw: tuple[int, int], cache_dir: str | Path | None = None
) -> tuple[np.ndarray, list[Any], list[dict]]:
    """uint8 NHWC images at the input size, the items that loaded, and the ones skipped.

    With ``cache_dir`` the data stage's ``ImageCache`` (same ``fit_image``) is used;
    otherwise each file is decoded here. An unreadable file is skipped and reported,
    not fatal: one bad image must not cost the whole evaluation.
    """
    items = list(items)
    if cache_dir is not None and items:
        from wastenet.data.cache import ImageCache

        cache = ImageCache(items, tuple(size_hw), cache_dir, progress=False)
        return np.stack([np.asarray(cache[i]) for i in range(len(items))]), items, []
    images, kept, skipped = [], [], []
    for item in items:
        try:
            images.append(fit_image(read_rgb(item.path), tuple(size_hw)))
            kept.append(item)
        except WasteNetError as exc:
            skipped.append({"path": str(item.path), "reason": str(exc)})
    h, w = size_hw
    stack = np.stack(images) if images else np.zeros((0, h, w, 3), np.uint8)
    return stack, kept, skipped
