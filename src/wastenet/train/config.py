"""The training config: one typed dataclass, saved beside every run, with paper presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from wastenet.config import from_dict, load_yaml
from wastenet.errors import ConfigError


@dataclass
class PhaseConfig:
    """One phase of training: the paper's main epochs, consolidation epochs, etc."""

    name: str
    epochs: int
    lr: float
    freeze: str = "none"  # none | backbone | gradual (unfreeze blocks from the top, one per epoch)
    augment: str = "train"  # train | light (flips only: test-like inputs, the FixRes phase) | none
    resolution_pct: float | None = None  # None: the run's resolution
    sources: list[str] | None = None  # train on these only (val and test: the run's)


@dataclass
class TrainConfig:
    name: str = "run"
    model: str = "efficientnet_lite0"
    pretrained: bool | str = True
    resolution_pct: float = 75.0
    manifest: str = ""
    sources: list[str] | None = None  # train on these sources only (None: all in the manifest)
    source_weights: dict[str, float] | None = None  # draws per epoch, e.g. {trashnet: 2}
    batch_size: int = 16
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine (within each phase)
    label_smoothing: float = 0.0
    # Outlier exposure: > 0 adds the training sources' out-of-distribution items to each
    # epoch, trained toward a uniform answer with this weight (the bin's "not sure").
    ood_weight: float = 0.0
    ood_sources: list[str] | None = None  # outliers of these training sources only (default: all)
    ema_decay: float | None = None  # e.g. 0.998: validate and ship an EMA of the weights
    teachers: list[str] | None = None  # bundles or artifacts to distil from (mean soft labels)
    distill_sources: list[str] | None = None  # teach only these sources' items (default: all)
    distill_weight: float = 0.5  # share of the distillation term in the loss
    distill_temperature: float = 2.0
    phases: list[PhaseConfig] = field(
        default_factory=lambda: [
            PhaseConfig("main", 50, 4.3e-5),
            PhaseConfig("consolidation", 8, 4.3e-6),
        ]
    )
    augment: dict = field(default_factory=lambda: {"preset": "table3"})
    # Real backgrounds by the source they were cut from (wastenet data backgrounds): a run
    # pastes objects onto those of its own training sources only, so a source left out
    # of training lends it nothing, not even its floors.
    backgrounds: dict[str, str] | None = None
    freeze_stem_blocks: int = 0  # keep the first k backbone blocks frozen throughout (CPU speed)
    seed: int = 0
    workers: int | str = "auto"  # loader processes; auto: 0 on a CPU, up to 8 per GPU
    channels_last: bool = True
    amp: str = "auto"  # auto | bf16 | fp16 | off
    early_stopping_patience: int | None = None
    max_steps_per_epoch: int | None = None  # for quick smoke runs
    eval_batch_size: int = 32
    cache_dir: str | None = None
    calibrate: bool = True  # fit the softmax temperature on val into model.safetensors
    # with calibrate: set the card's "not sure" bar to refuse this share of val (None: the
    # bar stays as the card has it); a fine-tune keeps the refusals of the model it replaces
    not_sure_refuse: float | None = None
    # with not_sure_refuse: the card's rule (certainty@2; None: top_probability)
    not_sure_rule: str | None = None

    def validate(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ConfigError(f"optimizer must be adam or adamw, not {self.optimizer!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"schedule must be constant or cosine, not {self.schedule!r}")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ConfigError(f"amp must be auto, bf16, fp16 or off, not {self.amp!r}")
        if not self.phases:
            raise ConfigError("a training config needs at least one phase")
        for phase in self.phases:
            if phase.freeze not in ("none", "backbone", "gradual"):
                raise ConfigError(f"phase {phase.name}: freeze must be none, backbone or gradual")
            if phase.augment not in ("train", "light", "none"):
                raise ConfigError(f"phase {phase.name}: augment must be train, light or none")
            if phase.epochs < 0 or phase.lr <= 0:
                raise ConfigError(f"phase {phase.name}: epochs must be >= 0 and lr > 0")
            if phase.sources is not None and not phase.sources:
                raise ConfigError(f"phase {phase.name}: sources must name at least one source")
            outside = set(phase.sources or ()) - set(self.sources) if self.sources else set()
            if outside:
                raise ConfigError(
                    f"phase {phase.name}: sources {sorted(outside)} are not among the run's "
                    f"sources {self.sources}"
                )
        for source, weight in (self.source_weights or {}).items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                raise ConfigError(f"source_weights: {source} needs a number > 0, not {weight!r}")
        if isinstance(self.ood_weight, bool) or not 0.0 <= self.ood_weight <= 10.0:
            raise ConfigError(f"ood_weight must be a number in [0, 10], not {self.ood_weight!r}")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if self.workers != "auto" and (
            isinstance(self.workers, (str, bool)) or int(self.workers) < 0
        ):
            raise ConfigError(f"workers must be 'auto' or a count >= 0, not {self.workers!r}")
        if self.ood_sources is not None and self.ood_weight == 0:
            raise ConfigError("ood_sources needs ood_weight > 0 (outlier exposure is off)")
        if self.distill_sources is not None and not self.teachers:
            raise ConfigError("distill_sources needs teachers to teach them")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ConfigError(f"distill_weight must be in [0, 1], not {self.distill_weight}")
        if self.distill_temperature <= 0:
            raise ConfigError(f"distill_temperature must be > 0, not {self.distill_temperature}")
        if self.not_sure_refuse is not None and not (
            self.calibrate and 0.0 <= self.not_sure_refuse < 1.0
        ):
            raise ConfigError(
                f"not_sure_refuse {self.not_sure_refuse!r}: a share in [0, 1), with calibrate on"
            )
        if self.not_sure_rule is not None:
            from wastenet.sureness import parse_rule

            if self.not_sure_refuse is None:
                raise ConfigError("not_sure_rule needs not_sure_refuse (the share its bar refuses)")
            try:
                parse_rule(self.not_sure_rule)
            except ValueError as exc:
                raise ConfigError(f"not_sure_rule {exc}") from exc

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)


def list_presets() -> list[str]:
    folder = resources.files("wastenet") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_train_config(name_or_path: str, overrides: dict | None = None) -> TrainConfig:
    """A preset name (see list_presets) or a YAML path, then key=value overrides."""
    import yaml

    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a folder never hides a preset
        if not path.exists():
            raise ConfigError(f"{path}: no such config file")
        data = yaml.safe_load(path.read_text()) or {}
    else:
        preset = resources.files("wastenet") / "presets" / f"{name_or_path}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"unknown preset {name_or_path!r}; presets: {', '.join(list_presets())}"
            )
        data = yaml.safe_load(preset.read_text()) or {}
    data.update(overrides or {})
    return train_config_from_dict(data, str(name_or_path))


def train_config_from_dict(data: dict, where: str) -> TrainConfig:
    """A checked TrainConfig from a config's keys (``where`` names it in errors)."""
    cfg = from_dict(TrainConfig, data, where=where)
    cfg.phases = [
        p if isinstance(p, PhaseConfig) else from_dict(PhaseConfig, p, f"{where}.phases")
        for p in cfg.phases
    ]
    cfg.validate()
    return cfg


def check_pretrained(cfg: TrainConfig) -> None:
    """A ``pretrained`` bundle that is not there: which run makes it, or how to name another.

    The staged presets name an earlier stage's bundle by a path relative to the working
    directory (``runs/lite0_mixed_75/model.safetensors``): it is there from the repository
    root once that stage has run, and nowhere else.
    """
    if not isinstance(cfg.pretrained, str) or Path(cfg.pretrained).is_file():
        return
    path = Path(cfg.pretrained)
    where = "" if path.is_absolute() else f" (looked for in {Path.cwd()})"
    stage = path.parent.name
    if stage in list_presets():
        manifest = cfg.manifest or "runs/data/manifest.json"
        make = (
            f"make it first with: wastenet train {stage} --set manifest={manifest} "
            f"--out {path.parent}"
        )
    else:
        make = "train the run that writes it first"
    raise ConfigError(
        f"{cfg.name} starts from the bundle {path}, which does not exist{where}; {make}, "
        "or start from a bundle you have with --set pretrained=PATH"
    )


def parse_overrides(pairs: list[str]) -> dict:
    """`key=value` strings (values parsed as YAML) into a dict."""
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r} is not key=value")
        out[key.strip()] = yaml.safe_load(value)
    return out


__all__ = ["PhaseConfig", "TrainConfig", "list_presets", "load_train_config", "load_yaml"]
