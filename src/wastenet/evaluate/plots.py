"""Report figures: matplotlib on the Agg backend, imported only when drawing.

Each ``save_*`` returns the PNG's path, or None where matplotlib is not installed
(``wastenet.plotting``: one note on stderr, the JSON and Markdown are still written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from wastenet.plotting import pyplot

__all__ = ["pyplot", "save_category_bars", "save_confusion_png"]


def save_confusion_png(confusion: dict, path: str | Path, title: str) -> Path | None:
    """Row-normalised colours, raw counts written in each cell."""
    plt = pyplot()
    if plt is None:
        return None
    counts = np.asarray(confusion["counts"])
    norm = np.asarray(confusion["normalized"])
    rows, cols = confusion["rows"], confusion["columns"]
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.2, 0.8 * len(rows) + 1.8))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for r in range(len(rows)):
        for c in range(len(cols)):
            if counts[r].sum() == 0:
                continue
            colour = "white" if norm[r, c] > 0.5 else "black"
            ax.text(
                c,
                r,
                f"{counts[r, c]}\n{100 * norm[r, c]:.0f}%",
                ha="center",
                va="center",
                color=colour,
                fontsize=8,
            )
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of row")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def save_category_bars(per_category: dict, path: str | Path, title: str) -> Path | None:
    """Figures 10/13 of the paper: grey bars = items shown, blue = correct, hatched =
    correct once items with an identified error cause are excused."""
    plt = pyplot()
    if plt is None:
        return None
    names = list(per_category)
    total = [per_category[n]["total"] for n in names]
    correct = [per_category[n]["correct"] for n in names]
    excused = [per_category[n]["correct_excluding_errors"] for n in names]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.4 * len(names) + 2, 4))
    ax.bar(x, total, color="0.8", width=0.7, label="items")
    ax.bar(
        x,
        excused,
        color="none",
        edgecolor="tab:blue",
        hatch="//",
        width=0.5,
        label="correct excluding errors",
    )
    ax.bar(x, correct, color="tab:blue", width=0.5, label="correct")
    ax.set_xticks(x, names)
    ax.set_ylabel("items")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
