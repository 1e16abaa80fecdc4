"""Everything a run needs, built once: device, model, bundle metadata, data, DDP."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime as dt
import os
from pathlib import Path
from typing import Any

import torch

from wastenet.classes import CLASSES, input_size_for
from wastenet.config import to_dict
from wastenet.errors import ConfigError, WasteNetError
from wastenet.meta import BundleMeta
from wastenet.train.config import PhaseConfig, TrainConfig, check_pretrained
from wastenet.train.data import CachedImages, weighted_rows


def build_augment(spec: dict, background_dirs: list[str] | None = None):
    """``{"preset": name, **overrides}`` -> the data stage's Augmenter; ``background_dirs``
    join any ``background_dir`` the spec names."""
    from wastenet.data import augment

    spec = dict(spec or {})
    if background_dirs:
        named = spec.get("background_dir") or []
        spec["background_dir"] = [*([named] if isinstance(named, str) else named), *background_dirs]
    name = spec.pop("preset", None)
    cfg = augment.preset(name) if name else augment.AugmentConfig()
    try:
        cfg = dataclasses.replace(cfg, **spec)
    except TypeError as exc:
        raise ConfigError(f"augment: {exc}") from exc
    return augment.Augmenter(cfg)


class EmaWeights:
    """An exponential moving average of the weights (and BN statistics) of a model.

    Decay warms up as min(decay, (1 + n) / (10 + n)) over the n updates so far, so the
    average starts at the current weights instead of lagging behind the pretrained ones.
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"ema_decay must be between 0 and 1, got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, updates: int) -> None:
        decay = min(self.decay, (1 + updates) / (10 + updates))
        for avg, now in zip(
            self.model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if avg.is_floating_point():
                avg.lerp_(now, 1.0 - decay)
            else:
                avg.copy_(now)


def loader_workers(workers: int | str, cuda: bool) -> int:
    """``auto``: none on a CPU, whose cores are busy with the model (augmentation is
    ~50x faster than a CPU training step); on a GPU, this process's share of the cores
    less one, at most 8 (a Lite0 step on an H100 needs ~6 augmenting cores)."""
    if workers != "auto":
        return int(workers)
    if not cuda:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = (cores or 1) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    return max(1, min(8, share - 1))


def cpu_has_fast_bf16() -> bool:
    from wastenet.provenance import cpu_flags

    return bool((cpu_flags() or set()) & {"avx512_bf16", "amx_bf16"})


class RunContext:
    def __init__(self, cfg: TrainConfig, run_dir: Path, progress: bool) -> None:
        from wastenet.data.manifest import load_manifest
        from wastenet.models import create_model, default_config

        check_pretrained(cfg)  # before any work: a staged preset run out of order
        self.cfg, self.run_dir, self.show_progress = cfg, run_dir, progress
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        cuda = torch.cuda.is_available()
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
        )
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if cuda else "gloo")
        if cuda:
            torch.cuda.set_device(self.device)
        self.amp_dtype = self._amp_dtype(cfg.amp, cuda)
        self.workers = loader_workers(cfg.workers, cuda)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        if not cfg.manifest:
            raise ConfigError(
                "the training config needs a manifest (wastenet data split ... first)"
            )
        self.manifest = load_manifest(cfg.manifest)
        named = {
            "sources": cfg.sources or [],
            "source_weights": list(cfg.source_weights or {}),
            **{f"phase {p.name} sources": p.sources or [] for p in cfg.phases},
            "distill_sources": cfg.distill_sources or [],
            "ood_sources": cfg.ood_sources or [],
        }
        for setting, names in named.items():
            unknown = set(names) - set(self.manifest.source_names)
            if unknown:
                raise ConfigError(f"{setting}: {sorted(unknown)} are not in {cfg.manifest}")
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.model, len(CLASSES), pretrained=cfg.pretrained)
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model_core = model.to(self.device)
        self.model = self.model_core
        self.ema = EmaWeights(self.model_core, cfg.ema_decay) if cfg.ema_decay else None
        self.teachers = None
        if cfg.teachers:
            from wastenet.train.distill import Teachers

            self.teachers = Teachers(cfg.teachers, cfg.distill_temperature, self.device)
        self._wrapped_for: tuple[bool, ...] | None = None
        self._wrap()
        mc = default_config(cfg.model)
        self.meta = BundleMeta(
            architecture=cfg.model,
            labels=list(CLASSES),
            input_size=list(input_size_for(cfg.resolution_pct)),
            mean=list(mc["mean"]),
            std=list(mc["std"]),
            resolution_pct=cfg.resolution_pct,
            manifest_hash=self.manifest.hash,
            train_config=to_dict(cfg),
        )
        self._augment = build_augment(cfg.augment, self._background_dirs())
        self._train: dict[tuple, CachedImages] = {}
        self._val: CachedImages | None = None

    def set_trainable_units(self, first_trainable: int) -> None:
        """Freeze the backbone units before ``first_trainable`` and rewrap for DDP."""
        from wastenet.train.freeze import set_trainable_units

        set_trainable_units(self.model_core, first_trainable)
        self._wrap()

    def _wrap(self) -> None:
        """Under DDP, wrap the model for the parameters that train now; rewrap when they change.

        DDP hooks, once, the parameters that need a gradient when it wraps: one frozen
        later never sends its gradient (the reducer fails at the next step), one unfrozen
        later is never averaged (the ranks drift apart). So freezing comes first, and a
        phase or epoch that trains another set of parameters gets a new wrapper.
        """
        if self.world == 1:
            return
        trainable = tuple(p.requires_grad for p in self.model_core.parameters())
        if trainable == self._wrapped_for:
            return
        old = self.model if self.model is not self.model_core else None
        if old is not None and hasattr(old, "_remove_autograd_hooks"):
            old._remove_autograd_hooks()  # the old reducer must not wait for these gradients
        cuda = self.device.type == "cuda"
        self.model = torch.nn.parallel.DistributedDataParallel(
            self.model_core, device_ids=[self.device] if cuda else None
        )
        self._wrapped_for = trainable

    @staticmethod
    def _amp_dtype(amp: str, cuda: bool):
        if amp == "off" or (amp == "auto" and not cuda and not cpu_has_fast_bf16()):
            return None
        if amp == "fp16" or (amp == "auto" and cuda and not torch.cuda.is_bf16_supported()):
            return torch.float16
        return torch.bfloat16

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, optimizer) -> None:
        if self.scaler:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def all_reduce(self, tensor: torch.Tensor) -> None:
        if self.world > 1:
            torch.distributed.all_reduce(tensor)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def _background_dirs(self) -> list[str]:
        """The ``backgrounds`` folders of the run's own training sources."""
        known = set(self.manifest.source_names)
        unknown = sorted(set(self.cfg.backgrounds or {}) - known)
        if unknown:
            raise ConfigError(f"backgrounds: {', '.join(unknown)} not among the manifest's sources")
        training = set(self.cfg.sources or known)
        return [d for s, d in (self.cfg.backgrounds or {}).items() if s in training]

    def _of_run(self, split: str, sources: list[str] | None = None) -> list:
        """A split's items (``ood`` too), limited to the run's sources (then to ``sources``)."""
        items = self.manifest.items(split=split)
        for chosen in (self.cfg.sources, sources):  # names checked against the manifest above
            if chosen:
                items = [it for it in items if it.source in chosen]
        return items

    def _outliers_for_training(self, sources: list[str] | None) -> list:
        """The run's out-of-distribution items whose photo groups are in the train split
        (of ``ood_sources`` only, where the config names them)."""
        items = self._of_run("ood", sources)
        if self.cfg.ood_sources:
            items = [it for it in items if it.source in self.cfg.ood_sources]
        if any(it.ood_split is None for it in items):
            raise ConfigError(
                f"ood_weight: {self.cfg.manifest} was made before out-of-distribution items "
                "had a split, so training on them would leak into scoring; run 'wastenet "
                "data split' again (same sources and seed keep every other assignment)"
            )
        return [it for it in items if it.for_outlier_exposure]

    def _items(self, split: str, sources: list[str] | None = None):
        """A split's items of the run; none is an error."""
        items = self._of_run(split, sources)
        if not items:
            raise WasteNetError(f"{self.cfg.manifest}: no {split} images for this run")
        return items

    def _cache(self, items, pct: float):
        from wastenet.data.cache import ImageCache

        return ImageCache(
            items,
            input_size_for(pct),
            self.cfg.cache_dir,
            progress=self.show_progress and self.rank == 0,
        )

    def train_data(self, phase: PhaseConfig) -> CachedImages:
        pct = phase.resolution_pct or self.cfg.resolution_pct
        key = (pct, tuple(phase.sources or ()))
        if key not in self._train:
            items = self._items("train", phase.sources)
            if self.cfg.ood_weight > 0:
                items += self._outliers_for_training(phase.sources)
            rows = weighted_rows(items, self.cfg.source_weights, self.cfg.seed)
            self._train[key] = CachedImages(
                items, self._cache(items, pct), self._augment, self.cfg.seed, rows
            )
        return self._train[key]

    def val_data(self) -> CachedImages:
        if self._val is None:
            items = self._items("val")
            self._val = CachedImages(items, self._cache(items, self.cfg.resolution_pct), None)
        return self._val

    def progress(self, **kwargs):
        from tqdm import tqdm

        return tqdm(
            disable=not self.show_progress or self.rank != 0,
            leave=False,
            dynamic_ncols=True,
            **kwargs,
        )

    @property
    def eval_model(self) -> torch.nn.Module:
        """What is validated and shipped: the EMA weights when on, else the trained ones."""
        return self.ema.model if self.ema else self.model_core

    def save_bundle(self, path: Path, metrics: dict | None = None, model=None, **card: Any) -> None:
        """The run's card with ``metrics`` and any ``card`` fields (the temperature and "not
        sure" rule calibration set)."""
        from wastenet.models import save_bundle

        meta = dataclasses.replace(
            self.meta,
            metrics=metrics or {},
            created=dt.datetime.now(dt.timezone.utc).isoformat(),
            **card,
        )
        save_bundle(self.eval_model if model is None else model, meta, path)

    def load_weights(self, path: Path, model=None) -> None:
        from safetensors.torch import load_file

        if not path.exists():
            raise WasteNetError(f"{path}: no checkpoint to resume from")
        target = self.model_core if model is None else model
        target.load_state_dict(load_file(str(path), device=str(self.device)))

    def finalize(self, best: Path) -> None:
        """Test-set accuracy per source of the best weights and, with ``calibrate``, the
        temperature fitted on the run's val split: ``model.safetensors``, written once."""
        from wastenet.models import load_bundle
        from wastenet.train.loop import evaluate_split

        model, meta = load_bundle(best, map_location=str(self.device))
        self.eval_model.load_state_dict(model.state_dict())
        test = evaluate_split(
            self,
            CachedImages(
                self._items("test"), self._cache(self._items("test"), self.cfg.resolution_pct), None
            ),
        )
        if self.rank != 0:
            return
        metrics = dict(meta.metrics, test=test)
        print("test: " + " ".join(f"{k}={v:.4f}" for k, v in test.items()), flush=True)
        card = {"temperature": 1.0}
        if self.cfg.calibrate:
            metrics, card = self._calibrate(best, metrics)
        self.save_bundle(self.run_dir / "model.safetensors", metrics=metrics, **card)

    def _calibrate(self, best: Path, metrics: dict) -> tuple[dict, dict]:
        """T on the run's val split, from the cache training validated on (the same
        pixels, and no need for the image files); the best weights run on the CPU."""
        from wastenet.data.cache import default_cache_dir
        from wastenet.models import load_bundle
        from wastenet.train.calibrate import calibrated_meta

        model, meta = load_bundle(best)
        cache = self.cfg.cache_dir or default_cache_dir()
        meta, s = calibrated_meta(
            model, dataclasses.replace(meta, metrics=metrics), self.cfg.manifest, "val",
            cache_dir=cache, sources=self.cfg.sources, not_sure=self.cfg.not_sure_rule,
            refuse=self.cfg.not_sure_refuse,
        )  # fmt: skip
        print(
            f"calibrated: temperature {s['temperature']:.3f}, val ECE "
            f"{100 * s['ece_before']:.2f} % -> {100 * s['ece_after']:.2f} %",
            flush=True,
        )
        if "not_sure" in s:
            print(f"'not sure': {s['not_sure']['rule']} (refuses {100 * s['not_sure']['refused']:.1f} "
                  "% of val)", flush=True)  # fmt: skip
        card = {"temperature": meta.temperature}
        if "not_sure" in s:  # the bar set to refuse cfg.not_sure_refuse of val
            card.update(
                not_sure_below=meta.not_sure_below,
                not_sure_score=meta.not_sure_score,
                not_sure_temperature=meta.not_sure_temperature,
            )
        return meta.metrics, card

    def close(self) -> None:
        if self.teachers:
            self.teachers.close()
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
