"""Per-epoch metrics CSV and loss/accuracy curves beside a run."""

from __future__ import annotations

import csv
from pathlib import Path


class RunLog:
    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.run_dir = run_dir
        self.enabled = enabled

    def epoch(self, row: dict, history: list[dict]) -> None:
        if not self.enabled:
            return
        keys: list[str] = []
        for past in history:
            keys += [k for k in past if k not in keys]
        with open(self.run_dir / "metrics.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)
        summary = " ".join(
            f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in row.items()
            if k
            in ("epoch", "phase", "train_loss", "train_acc", "val_loss", "val_acc", "images_per_s")
        )
        print(summary, flush=True)
        self.curves(history)

    def curves(self, history: list[dict]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [h["epoch"] for h in history]
        fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
        for key, ax in (("loss", ax_loss), ("acc", ax_acc)):
            ax.plot(epochs, [h[f"train_{key}"] for h in history], label="train")
            ax.plot(epochs, [h[f"val_{key}"] for h in history], label="val")
            for name in history[-1]:
                if key == "acc" and name.startswith("val_acc_"):
                    ax.plot(epochs, [h.get(name) for h in history], "--", label=name[4:])
            ax.set_xlabel("epoch")
            ax.set_title(key)
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(self.run_dir / "curves.png", dpi=90)
        plt.close(fig)
