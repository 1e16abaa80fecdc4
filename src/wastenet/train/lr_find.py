"""The LR range test (Smith 2017; the paper's "learning rate finder"): raise the LR
exponentially over a few hundred steps, record the smoothed loss, suggest the LR of
steepest descent, and plot loss against LR."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from wastenet.train.config import TrainConfig
from wastenet.train.data import epoch_batches, make_loader, to_input
from wastenet.train.loss import set_label_loss
from wastenet.train.setup import RunContext


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The LR where the smoothed loss falls fastest (per log-LR), before it blows up."""
    lrs_a, losses_a = np.asarray(lrs), np.asarray(losses)
    stop = len(losses_a)
    best = float(np.min(losses_a))
    for i, value in enumerate(losses_a):
        if value > 4 * best and i > 5:
            stop = i
            break
    if stop < 3:
        return float(lrs_a[0])
    slope = np.gradient(losses_a[:stop], np.log10(lrs_a[:stop]))
    return float(lrs_a[int(np.argmin(slope))])


def lr_find(
    cfg: TrainConfig,
    out_dir: str | Path,
    start_lr: float = 1e-7,
    end_lr: float = 1e-1,
    steps: int = 100,
    progress: bool = True,
) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(cfg, out_dir, progress)
    phase = cfg.phases[0]
    data = ctx.train_data(phase)
    data.mode = "train"
    model = ctx.model
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=start_lr)
    factor = (end_lr / start_lr) ** (1 / max(1, steps - 1))
    lrs, losses, smoothed = [], [], 0.0
    step, epoch = 0, 0
    bar = ctx.progress(total=steps, desc="lr-find")
    while step < steps:
        batches = epoch_batches(len(data), cfg.batch_size, cfg.seed, epoch, True)
        for images, masks in make_loader(data, batches, ctx.workers):
            lr = start_lr * factor**step
            for group in optimizer.param_groups:
                group["lr"] = lr
            with ctx.autocast():
                logits = model(to_input(images, ctx.meta.mean, ctx.meta.std, ctx.device))
            loss = set_label_loss(logits, masks.to(ctx.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss)
            smoothed = value if step == 0 else 0.9 * smoothed + 0.1 * value
            lrs.append(lr)
            losses.append(smoothed / (1 - 0.9 ** (step + 1)) if step else value)
            step += 1
            bar.update(1)
            if step >= steps or not math.isfinite(value) or value > 10 * (min(losses) + 1e-9):
                step = steps
                break
        epoch += 1
    bar.close()
    suggestion = suggest_lr(lrs, losses)
    result = {"lrs": lrs, "losses": losses, "suggested_lr": suggestion, "model": cfg.model}
    (out_dir / "lr_find.json").write_text(json.dumps(result, indent=1))
    _plot(lrs, losses, suggestion, out_dir / "lr_find.png")
    return result


def _plot(lrs, losses, suggestion, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses)
    ax.axvline(suggestion, color="r", linestyle="--", label=f"suggested {suggestion:.2e}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("smoothed loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
