"""The training run: phases of epochs over cached images, resumable at any step.

Paper recipe (4.1.2): Adam, constant LR, cross-entropy, batch 16, main epochs, then
"consolidation epochs" at a 10x lower LR with nothing frozen. The benchmark (4.1.1)
adds a frozen-backbone phase and gradual unfreezing. Set labels train with the
marginal likelihood (loss.py); teachers, when given, add a distillation term (distill.py).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wastenet.config import save_yaml
from wastenet.errors import WasteNetError
from wastenet.evaluate.metrics import score
from wastenet.provenance import write_provenance
from wastenet.train import checkpoint, freeze
from wastenet.train.config import TrainConfig
from wastenet.train.data import CachedImages, epoch_batches, make_loader, to_input
from wastenet.train.distill import distill_loss
from wastenet.train.loss import set_label_loss
from wastenet.train.runlog import RunLog
from wastenet.train.setup import RunContext

EMA_FILE = "ema.safetensors"


@dataclass
class Position:
    phase: int = 0
    epoch: int = 0  # epoch within the phase
    step: int = 0  # next step within the epoch
    global_epoch: int = 0
    best_val: float = -1.0
    best_epoch: int = -1
    bad_epochs: int = 0
    ema_updates: int = 0
    history: list = field(default_factory=list)


class _StopFlag:
    """First SIGINT/SIGTERM asks for a clean stop at the next step; a second one kills."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict = {}

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            print("\nstopping after this step; resume with --resume", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ValueError):  # not the main thread
                self._old[sig] = signal.signal(sig, handler)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def taught_rows(data, rows: list[int], sources: list[str] | None, device) -> torch.Tensor:
    """1.0 for the batch rows the teachers teach (items of ``sources``; all when None)."""
    if sources is None:
        return torch.ones(len(rows), device=device)
    return torch.tensor([float(data.item(r).source in sources) for r in rows], device=device)


def _lr_at(cfg: TrainConfig, base_lr: float, step: int, total: int) -> float:
    if cfg.schedule == "cosine" and total > 1:
        return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / total)))
    return base_lr


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float):
    params = list(model.parameters())
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=cfg.weight_decay)


@torch.inference_mode()
def evaluate_split(ctx: RunContext, data: CachedImages) -> dict:
    """Loss and set-aware top-1 (``metrics.score``) on a split, overall and per source
    (all ranks reduced)."""
    model = ctx.eval_model.eval()
    data.mode = "none"
    batches = epoch_batches(len(data), ctx.cfg.eval_batch_size, 0, 0, False, ctx.rank, ctx.world)
    sources = sorted({it.source for it in data.items})
    sums = torch.zeros(2 + 2 * len(sources), dtype=torch.float64)
    preds, masks_seen, item_sources = [], [], []
    for batch, (images, masks) in zip(
        batches, make_loader(data, batches, ctx.workers), strict=True
    ):
        with ctx.autocast():
            logits = model(to_input(images, ctx.meta.mean, ctx.meta.std, ctx.device))
        sums[0] += float(set_label_loss(logits, masks.to(ctx.device))) * len(batch)
        preds.append(logits.argmax(dim=1).cpu().numpy())
        masks_seen.append(masks.numpy())
        item_sources += [data.item(i).source for i in batch]
    labels = ctx.meta.labels
    masks = np.concatenate(masks_seen) if masks_seen else np.zeros((0, len(labels)), bool)
    pred = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    scored = score(pred, masks, labels, item_sources)
    sums[1] = scored.right
    for k, source in enumerate(sources):
        if source in scored.per_source:
            sums[2 + 2 * k] = scored.per_source[source].right
            sums[3 + 2 * k] = scored.per_source[source].n
    ctx.all_reduce(sums)
    n = max(1.0, float(sum(sums[3::2])))
    out = {"loss": float(sums[0]) / n, "acc": float(sums[1]) / n}
    for k, source in enumerate(sources):
        out[f"acc_{source}"] = float(sums[2 + 2 * k]) / max(1.0, float(sums[3 + 2 * k]))
    return out


def _train_epoch(ctx: RunContext, pos: Position, stop: _StopFlag, optimizer) -> dict | None:
    """One epoch from ``pos.step``; returns train metrics, or None when a stop was asked."""
    cfg, phase = ctx.cfg, ctx.cfg.phases[pos.phase]
    data = ctx.train_data(phase)
    data.epoch, data.mode = pos.global_epoch, phase.augment
    first = freeze.first_trainable_unit(
        ctx.model_core, phase.freeze, pos.epoch, phase.epochs, cfg.freeze_stem_blocks
    )
    ctx.set_trainable_units(first)  # before DDP wraps: it hooks what trains at wrap time
    ctx.model.train()
    freeze.frozen_batchnorm_to_eval(ctx.model_core)
    batches = epoch_batches(
        len(data), cfg.batch_size, cfg.seed, pos.global_epoch, True, ctx.rank, ctx.world
    )
    if cfg.max_steps_per_epoch:
        batches = batches[: cfg.max_steps_per_epoch]
    steps_total = len(batches) * phase.epochs
    todo = batches[pos.step :]
    loss_sum = correct = seen = seen_labelled = 0.0
    started = time.perf_counter()
    bar = ctx.progress(
        total=len(batches), initial=pos.step, desc=f"{phase.name} {pos.epoch + 1}/{phase.epochs}"
    )
    for rows, (images, masks) in zip(todo, make_loader(data, todo, ctx.workers), strict=True):
        lr = _lr_at(cfg, phase.lr, pos.epoch * len(batches) + pos.step, steps_total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(hash((cfg.seed, pos.global_epoch, pos.step)) & 0x7FFFFFFF)
        x = to_input(images, ctx.meta.mean, ctx.meta.std, ctx.device)
        with ctx.autocast():
            logits = ctx.model(x)
        y = masks.to(ctx.device)
        loss = set_label_loss(logits, y, cfg.label_smoothing, cfg.ood_weight, per_row=True)
        if ctx.teachers:
            soft = ctx.teachers.probs(images, ctx.autocast)
            w = cfg.distill_weight * taught_rows(data, rows, cfg.distill_sources, ctx.device)
            loss = (1 - w) * loss + w * distill_loss(logits, soft, cfg.distill_temperature)
        loss = loss.mean()
        optimizer.zero_grad(set_to_none=True)
        ctx.backward(loss)
        ctx.step(optimizer)
        if ctx.ema:
            ctx.ema.update(ctx.model_core, pos.ema_updates)
            pos.ema_updates += 1
        pos.step += 1
        loss_sum += float(loss.detach()) * len(masks)
        pred = logits.detach().argmax(dim=1).cpu().numpy()
        correct += score(pred, masks.numpy(), ctx.meta.labels).right  # an outlier: never right
        seen += len(masks)
        seen_labelled += float(masks.any(dim=1).sum())  # outliers have no right answer
        bar.update(1)
        acc = correct / max(seen_labelled, 1)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{acc:.3f}", lr=f"{lr:.1e}")
        if stop.requested:
            bar.close()
            return None
    bar.close()
    seconds = time.perf_counter() - started
    return {
        "train_loss": loss_sum / max(seen, 1),
        "train_acc": correct / max(seen_labelled, 1),
        "lr": lr if todo else phase.lr,
        "seconds": seconds,
        "images_per_s": seen * ctx.world / max(seconds, 1e-9),
    }


def _save_progress(ctx: RunContext, pos: Position, optimizer) -> None:
    if ctx.rank != 0:
        return
    ctx.save_bundle(ctx.run_dir / "last.safetensors", model=ctx.model_core)
    if ctx.ema:
        ctx.save_bundle(ctx.run_dir / EMA_FILE, model=ctx.ema.model)
    checkpoint.save_optimizer(optimizer, ctx.run_dir / checkpoint.OPTIM_FILE)
    checkpoint.save_state(ctx.run_dir, pos.__dict__)


def train(
    cfg: TrainConfig, run_dir: str | Path, resume: bool = False, progress: bool = True
) -> Path:
    """Run (or resume) a training run; returns the path of the model it wrote:
    ``model.safetensors`` (the best weights, tested and calibrated), where this rank wrote
    it, else ``best.safetensors`` (the best weights as they were saved)."""
    run_dir = Path(run_dir)
    if not resume and (run_dir / checkpoint.STATE_FILE).exists():
        raise WasteNetError(f"{run_dir}: a run is already there; pass --resume or another --out")
    ctx = RunContext(cfg, run_dir, progress)  # checks the config before the folder is made
    run_dir.mkdir(parents=True, exist_ok=True)
    pos = Position()
    if resume:
        pos = Position(**checkpoint.load_state(run_dir))
        ctx.load_weights(run_dir / "last.safetensors")
        if ctx.ema and (run_dir / EMA_FILE).exists():
            ctx.load_weights(run_dir / EMA_FILE, model=ctx.ema.model)
    elif ctx.rank == 0:
        save_yaml(cfg, run_dir / "config.yaml")
        write_provenance(run_dir / "provenance.json")  # the command, date and machine
    log = RunLog(run_dir, enabled=ctx.rank == 0)
    with _StopFlag() as stop:
        while pos.phase < len(cfg.phases):
            phase = cfg.phases[pos.phase]
            optimizer = _make_optimizer(cfg, ctx.model_core, phase.lr)
            if resume and (run_dir / checkpoint.OPTIM_FILE).exists() and pos.epoch + pos.step > 0:
                checkpoint.load_optimizer(optimizer, run_dir / checkpoint.OPTIM_FILE)
            resume = False
            while pos.epoch < phase.epochs:
                metrics = _train_epoch(ctx, pos, stop, optimizer)
                if metrics is None:
                    _save_progress(ctx, pos, optimizer)
                    raise KeyboardInterrupt
                val = evaluate_split(ctx, ctx.val_data())
                row = {
                    "epoch": pos.global_epoch + 1,
                    "phase": phase.name,
                    **metrics,
                    **{f"val_{k}": v for k, v in val.items()},
                }
                pos.history.append(row)
                log.epoch(row, pos.history)
                if val["acc"] >= pos.best_val:
                    pos.best_val, pos.best_epoch, pos.bad_epochs = (
                        val["acc"],
                        pos.global_epoch + 1,
                        0,
                    )
                    if ctx.rank == 0:
                        ctx.save_bundle(run_dir / "best.safetensors", metrics={"val": val})
                else:
                    pos.bad_epochs += 1
                pos.epoch, pos.step, pos.global_epoch = pos.epoch + 1, 0, pos.global_epoch + 1
                _save_progress(ctx, pos, optimizer)
                patience = cfg.early_stopping_patience
                if patience and pos.bad_epochs >= patience and pos.epoch < phase.epochs:
                    print(
                        f"early stop of phase {phase.name}: no better val acc in {patience} epochs"
                    )
                    break
            pos.phase, pos.epoch, pos.step, pos.bad_epochs = pos.phase + 1, 0, 0, 0
            if ctx.rank == 0:
                checkpoint.save_state(run_dir, pos.__dict__)
    if ctx.rank == 0:  # every phase done: the optimizer state (2x the weights) resumes nothing
        (run_dir / checkpoint.OPTIM_FILE).unlink(missing_ok=True)
    best = run_dir / "best.safetensors"
    ctx.barrier()
    if best.exists():
        ctx.finalize(best)  # every rank tests its shard; rank 0 calibrates and writes the model
    ctx.close()
    model = run_dir / "model.safetensors"
    return model if ctx.rank == 0 and model.exists() else best
