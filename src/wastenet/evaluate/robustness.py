"""The robustness suite: accuracy of a predictor on each corruption at each severity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from wastenet.evaluate.corruptions import CORRUPTIONS, corrupt
from wastenet.evaluate.metrics import score
from wastenet.evaluate.plots import pyplot

PredictFn = Callable[[np.ndarray], np.ndarray]  # uint8 NHWC -> probabilities (N, classes)


def run_robustness(
    predict_images: PredictFn,
    images: np.ndarray,
    label_sets: Sequence[tuple[str, ...]],
    keys: Sequence[str],
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    severities: Sequence[int] = (1, 3, 5),
    batch_size: int = 32,
    clean_accuracy: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Accuracy per corruption x severity, the mean over all, and that relative to clean.

    Accuracy counts a set label as right when the prediction is in the set. Images are
    corrupted a batch at a time, so memory stays at one batch beyond the clean images.
    """
    label_sets = list(label_sets)

    def accuracy(make: Callable[[int], np.ndarray]) -> float:
        correct = 0
        for start in range(0, len(images), batch_size):
            stop = min(start + batch_size, len(images))
            batch = np.stack([make(i) for i in range(start, stop)])
            correct += score(predict_images(batch), label_sets[start:stop]).right
        return correct / len(images) if len(images) else float("nan")

    if clean_accuracy is None:
        clean_accuracy = accuracy(lambda i: images[i])
    table: dict[str, dict[str, float]] = {}
    for name in corruptions:
        table[name] = {}
        for sev in severities:
            if progress:
                progress(f"robustness: {name} severity {sev}")
            table[name][str(sev)] = accuracy(
                lambda i, n=name, s=sev: corrupt(images[i], n, s, keys[i])
            )
    per_corruption = {n: float(np.mean(list(v.values()))) for n, v in table.items()}
    mean_acc = float(np.mean(list(per_corruption.values()))) if per_corruption else None
    return {
        "n": len(images),
        "severities": [int(s) for s in severities],
        "clean_accuracy": clean_accuracy,
        "accuracy": table,
        "per_corruption_mean": per_corruption,
        "mean_corruption_accuracy": mean_acc,
        "relative_to_clean": (mean_acc / clean_accuracy) if mean_acc and clean_accuracy else None,
        "note": "perturbations applied to the uint8 image after fit_image, before normalize",
    }


def save_preview_grid(
    image: np.ndarray,
    path: str | Path,
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    severities: Sequence[int] = (1, 2, 3, 4, 5),
    key: str = "preview",
) -> Path | None:
    """One row per corruption: the clean image, then each severity (for a human to check).

    None, nothing drawn, where matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        return None
    rows, cols = len(corruptions), len(severities) + 1
    h, w = image.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.0, rows * 2.0 * h / w + 0.3))
    axes = np.atleast_2d(axes)
    for r, name in enumerate(corruptions):
        panels = [("clean", image)] + [
            (f"severity {s}", corrupt(image, name, s, key)) for s in severities
        ]
        for c, (title, panel) in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def save_robustness_chart(result: dict, path: str | Path) -> Path | None:
    """Accuracy vs severity per corruption, with the clean accuracy as a dashed line
    (None, nothing drawn, where matplotlib is not installed)."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sevs = result["severities"]
    for name, row in result["accuracy"].items():
        ax.plot(sevs, [100 * row[str(s)] for s in sevs], marker="o", label=name)
    if result.get("clean_accuracy") is not None:
        ax.axhline(100 * result["clean_accuracy"], color="k", ls="--", label="clean")
    ax.set_xlabel("severity")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_xticks(sevs)
    ax.set_ylim(0, 100)
    ax.set_title(
        f"Robustness (mean corruption accuracy {100 * (result['mean_corruption_accuracy'] or 0):.1f} %)"
    )
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
