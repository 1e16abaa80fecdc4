"""The plan of a leave-one-source-out run: which folds, what each fold's stages train on,
and which models stand in (a given fold model, each fold's own teacher). Config logic
only: nothing here trains or predicts, so every fold is checked before the first trains.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wastenet.errors import ConfigError, WasteNetError


@dataclass
class FoldPlan:
    """One model to score: trained without ``left_out`` (and without ``holdout``)."""

    name: str
    left_out: list[str]
    train_sources: list[str]
    holdout: list[str] = field(default_factory=list)


def id_sources(manifest: Any) -> list[str]:
    """Sources with in-distribution items; a folder of OOD images alone trains nothing. A
    train-only source (its labels a model's guesses) is refused: a fold scores whole sources."""
    guessed = sorted(s["name"] for s in manifest.sources if s.get("train_only"))
    if guessed:
        raise WasteNetError(
            f"{', '.join(guessed)}: a train-only source (labels a model gave, never scored), "
            "and leave-one-source-out scores every source it leaves out; split the data "
            "without it to measure domain shift"
        )
    return sorted({it.source for it in manifest.items()})


def check_names(option: str, names: Sequence[str], known: Sequence[str]) -> None:
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise WasteNetError(
            f"{option}: {', '.join(unknown)} not among the manifest's sources ({', '.join(known)})"
        )


def plan_folds(
    known: Sequence[str],
    sources: Sequence[str] | None = None,
    holdout_only: Sequence[str] = (),
    folds: Sequence[str] | None = None,
) -> list[FoldPlan]:
    """One fold per source of the pool (``sources`` or all, less the holdout-only ones), or
    only those leaving out one of ``folds`` (a long LOSO run a fold at a time)."""
    check_names("--sources", sources or [], known)
    check_names("--holdout-only", holdout_only, known)
    both = sorted(set(sources or []) & set(holdout_only))
    if both:
        raise WasteNetError(f"{', '.join(both)}: both in --sources and --holdout-only")
    pool = [s for s in dict.fromkeys(sources or known) if s not in holdout_only]
    if len(pool) < 2:
        raise WasteNetError(
            f"leaving one source out needs at least two training sources; there is only "
            f"{', '.join(pool) or 'none'} (manifest sources: {', '.join(known)})"
        )
    outside = sorted(set(folds or ()) - set(pool))
    if outside:
        raise WasteNetError(
            f"--folds: {', '.join(outside)} not among the sources folds leave out ({', '.join(pool)})"
        )
    return [
        FoldPlan(f"without-{s}", [s], [t for t in pool if t != s], list(holdout_only))
        for s in pool
        if folds is None or s in folds
    ]


def plan_existing(
    known: Sequence[str], trained_on: Sequence[str], holdout_only: Sequence[str] = ()
) -> FoldPlan:
    """A shipped bundle: every manifest source outside ``trained_on`` counts as left out."""
    check_names("--trained-on", trained_on, known)
    check_names("--holdout-only", holdout_only, known)
    left_out = [s for s in known if s not in trained_on and s not in holdout_only]
    if not left_out and not holdout_only:
        raise WasteNetError("every manifest source is in --trained-on: no unseen source to score")
    return FoldPlan("model", left_out, list(trained_on), list(holdout_only))


def apply_resolution(cfg: Any, pct: float | None) -> None:
    """A screening run: the run's and every phase's resolution set to ``pct``."""
    if pct is None:
        return
    cfg.resolution_pct = float(pct)
    for phase in cfg.phases:
        phase.resolution_pct = float(pct)


def check_resolution(pct: float | None) -> None:
    if pct is not None and not 0 < pct <= 100:
        raise ConfigError(f"--resolution must be a percentage in (0, 100], not {pct:g}")


def stage_configs(
    recipes: Sequence[tuple[str, Any]], plan: FoldPlan
) -> tuple[list[tuple[int, str, Any]], list[dict]]:
    """Each recipe narrowed to the fold's sources: ``[(stage, name, cfg)]`` and what was dropped.

    A phase (or a stage's ``sources``) naming only left-out sources is dropped; one naming
    some keeps those. A stage left without phases is skipped: the next one continues from
    the last stage trained (``pretrained`` = its model, set when training).
    """
    allowed = plan.train_sources
    stages, dropped = [], []
    for k, (name, base) in enumerate(recipes, 1):
        cfg = copy.deepcopy(base)
        run_sources = [s for s in (base.sources or allowed) if s in allowed]
        if not run_sources:
            dropped.append({"stage": k, "recipe": name, "phase": None, "sources": base.sources})
            continue
        cfg.sources = run_sources
        if cfg.source_weights:
            cfg.source_weights = {s: w for s, w in cfg.source_weights.items() if s in run_sources}
        dropped += _narrow_source_lists(cfg, k, name)
        kept = []
        for phase in cfg.phases:
            if phase.sources is not None:
                wanted = list(phase.sources)
                phase.sources = [s for s in wanted if s in run_sources]
                if not phase.sources:
                    dropped.append(
                        {"stage": k, "recipe": name, "phase": phase.name, "sources": wanted}
                    )
                    continue
            kept.append(phase)
        if not kept:  # its phases are recorded above; the stage itself goes too
            wanted = sorted({s for p in base.phases for s in p.sources or ()})
            dropped.append({"stage": k, "recipe": name, "phase": None, "sources": wanted})
            continue
        cfg.phases = kept
        cfg.validate()
        stages.append((k, name, cfg))
    if not stages:
        raise ConfigError(f"{plan.name}: every stage of the recipe trains only on left-out sources")
    if stages[0][0] != 1 and len(recipes) > 1:
        raise ConfigError(
            f"{plan.name}: stage 1 would be dropped, so stage {stages[0][0]} would start "
            "from weights that saw the left-out source"
        )
    return stages, dropped


def given_models(
    fold_models: dict[str, str], plans: Sequence[FoldPlan], log: Callable[[str], None]
) -> dict[str, str]:
    """``--fold-model S=MODEL``: MODEL is the fold without S (a model already trained on the
    other sources, such as a previous release), scored instead of trained. A model that
    records its training sources must not have seen S or a holdout source; one that does
    not is taken at its word, and said so."""
    by_left = {plan.left_out[0]: plan for plan in plans}
    given = {}
    for source, model in fold_models.items():
        plan = by_left.get(source)
        if plan is None:
            raise WasteNetError(
                f"--fold-model {source}=...: no fold leaves out {source} "
                f"(folds leave out {', '.join(by_left)})"
            )
        path = Path(model)
        if not path.is_file():
            raise WasteNetError(f"--fold-model {source}={model}: no such model file")
        recorded = artifact_meta(path).trained_sources
        if recorded is None:
            log(f"note: {model} does not record its training sources; counted as trained on "
                f"{', '.join(plan.train_sources)} (--fold-model {source}=...)")  # fmt: skip
        else:
            saw = sorted(set(recorded) & {*plan.left_out, *plan.holdout})
            if saw:
                raise WasteNetError(
                    f"--fold-model {source}={model}: it trained on {', '.join(saw)}"
                )
        given[plan.name] = str(path)
    return given


def artifact_meta(path: Path) -> Any:
    """The model card of any model file: a bundle, an ONNX file or an accelerated engine."""
    if path.suffix == ".safetensors":
        from wastenet.meta import read_bundle_meta

        return read_bundle_meta(path)
    if path.suffix == ".onnx":
        from wastenet.onnx_file import read_onnx_meta

        return read_onnx_meta(path)
    from wastenet.evaluate.predict import open_engine

    return open_engine(path).meta


def _narrow_source_lists(cfg: Any, k: int, name: str) -> list[dict]:
    """``ood_sources`` and ``distill_sources`` narrowed to the stage's sources: a list left
    empty turns its term off (outlier exposure, distillation) and is recorded as dropped."""
    dropped = []
    for key, off in (("ood_sources", {"ood_weight": 0.0}), ("distill_sources", {"teachers": None})):
        wanted = getattr(cfg, key)
        if wanted is None:
            continue
        kept = [s for s in wanted if s in cfg.sources]
        setattr(cfg, key, kept or None)
        if not kept:
            for attr, value in off.items():
                setattr(cfg, attr, value)
            dropped.append(
                {"stage": k, "recipe": name, "phase": None, "term": key, "sources": wanted}
            )
    return dropped


def fold_teachers(teachers_from: Path, plans: Sequence[FoldPlan]) -> dict[str, str]:
    """Each fold's teacher: the model of the same fold of an earlier LOSO run (its output
    folder, or its shift.json kept elsewhere).

    A recipe that distils from a fixed model (``teachers``) leaks the left-out source into
    its fold when that model saw it; the earlier run's fold model never did. Checked for
    every fold before the first one trains.
    """
    path = teachers_from if teachers_from.is_file() else teachers_from / "shift.json"
    if not path.is_file():
        raise WasteNetError(
            f"--teachers-from {teachers_from}: no shift.json there (run that LOSO first)"
        )
    try:
        folds = {f["name"]: f for f in json.loads(path.read_text())["folds"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise WasteNetError(f"{path}: not a shift result ({exc})") from None
    teachers = {}
    for plan in plans:
        fold = folds.get(plan.name)
        model = Path(fold["model"]) if fold and fold.get("model") else None
        if model is None:
            raise WasteNetError(
                f"--teachers-from {teachers_from}: fold {plan.name} has no finished model"
            )
        if not model.is_file():
            where = (
                ""
                if model.is_absolute()
                else " (its paths are relative: run from the folder that run started in)"
            )
            raise WasteNetError(
                f"--teachers-from {teachers_from}: fold {plan.name}'s model {model} is not there{where}"
            )
        saw = sorted(set(fold["train_sources"]) & {*plan.left_out, *plan.holdout})
        if saw:
            raise WasteNetError(
                f"--teachers-from {teachers_from}: its {plan.name} model trained on {', '.join(saw)}"
            )
        teachers[plan.name] = str(model)
    return teachers
