"""Leave-one-source-out (LOSO) evaluation: how a recipe does on a source it never saw.

Test splits share their source's camera, light and backdrop with the training data, so
they overstate what a bin meets in the field. Here each fold trains the recipe on every
source but one (OUT/without-S/stageK/, resumable) and scores ALL of S's items (none was
seen), set-aware as ``evaluate`` does, plus the "not sure" rates on S's out-of-distribution
items and on the training sources' own test items. ``--holdout-only`` sources are never
trained on and scored by every fold; ``score_existing`` measures a shipped bundle alike.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wastenet.classes import CLASSES
from wastenet.config import to_dict
from wastenet.errors import WasteNetError
from wastenet.evaluate.shift_plan import (
    FoldPlan,
    apply_resolution,
    check_names,
    check_resolution,
    fold_teachers,
    given_models,
    id_sources,
    plan_existing,
    plan_folds,
    stage_configs,
)
from wastenet.evaluate.shift_report import (
    render_markdown,
    seen_test_scores,
    source_scores,
    summarise,
)
from wastenet.provenance import provenance
from wastenet.sureness import NotSureRule, refusal_bar

MODEL_FILE = "model.safetensors"
SECONDS_FILE = "shift_seconds.json"  # wall time spent training a stage, over all attempts
FORMAT_VERSION = 1


def _check_same_config(cfg: Any, run_dir: Path) -> None:
    """Refuse to reuse or resume a stage folder that holds a run of another config."""
    from wastenet.train.config import load_train_config

    saved = run_dir / "config.yaml"
    if not saved.exists():
        return
    old, new = (_same_spelling(to_dict(c)) for c in (load_train_config(str(saved)), cfg))
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise WasteNetError(
            f"{run_dir} holds a run of another config (differs in {', '.join(keys)}); "
            "use another --out or remove that folder"
        )


def _same_spelling(cfg: dict) -> dict:
    """A config with its manifest path resolved: the same manifest named by a relative or
    an absolute path is the same run (a stage folder carried from another machine)."""
    if cfg.get("manifest"):
        cfg["manifest"] = str(Path(cfg["manifest"]).expanduser().resolve())
    return cfg


def _add_seconds(run_dir: Path, seconds: float) -> float:
    path = run_dir / SECONDS_FILE
    total = seconds + (json.loads(path.read_text())["seconds"] if path.exists() else 0.0)
    path.write_text(json.dumps({"seconds": total}))
    return total


def train_stage(
    cfg: Any, run_dir: Path, skip_train: bool, progress: bool, superseded: bool = False
) -> dict:
    """Train (or resume, or reuse) one stage; a finished model is never retrained.

    ``superseded``: a later stage of the fold is finished, so this one is reused from its
    config alone; its weights are not needed (a fold kept without them resumes after it).
    """
    from wastenet.train.checkpoint import STATE_FILE

    model = run_dir / MODEL_FILE
    _check_same_config(cfg, run_dir)
    seconds_file = run_dir / SECONDS_FILE
    if superseded or (model.exists() and _calibrated(cfg, model)):
        old = json.loads(seconds_file.read_text())["seconds"] if seconds_file.exists() else None
        return {"status": "reused", "train_seconds": None if old is None else round(old, 2)}
    if skip_train:
        return {"status": "missing", "train_seconds": None}
    from wastenet.train.loop import train

    resume = (run_dir / STATE_FILE).exists()
    started = time.perf_counter()
    try:
        train(cfg, run_dir, resume=resume, progress=progress)
    finally:
        run_dir.mkdir(parents=True, exist_ok=True)
        total = _add_seconds(run_dir, time.perf_counter() - started)
    if not model.exists():
        raise WasteNetError(f"{run_dir}: training ended without {MODEL_FILE}")
    return {"status": "resumed" if resume else "trained", "train_seconds": round(total, 2)}


def _calibrated(cfg: Any, model: Path) -> bool:
    """A model written just before an interruption may lack its temperature: fit it now."""
    from wastenet.meta import read_bundle_meta

    if not cfg.calibrate or "calibration" in (read_bundle_meta(model).metrics or {}):
        return True
    from wastenet.data.cache import default_cache_dir
    from wastenet.models import load_bundle, save_bundle
    from wastenet.train.calibrate import calibrated_meta

    cache = cfg.cache_dir or default_cache_dir()
    net, meta = load_bundle(model)  # finish what training's last step would have written
    meta, _ = calibrated_meta(net, meta, cfg.manifest, "val", cache, cfg.sources)
    save_bundle(net, meta, model)
    return True


def stage_dir(out: Path, plan: FoldPlan, k: int) -> Path:
    """Where stage ``k`` of a fold trains: OUT/without-S/stageK."""
    return out / plan.name / f"stage{k}"


def train_fold(
    recipes: Sequence[tuple[str, Any]],
    plan: FoldPlan,
    out: Path,
    skip_train: bool = False,
    progress: bool = True,
    teacher: str | None = None,
) -> dict:
    """The fold's stages in order, each from the previous one's model; the fold's record.

    ``teacher`` (the fold's own, see ``fold_teachers``) replaces every distilling stage's
    ``teachers``."""
    stages, dropped = stage_configs(recipes, plan)
    record: dict = {"stages": [], "dropped_phases": dropped, "model": None}
    previous: Path | None = None
    last_finished = max(
        (k for k, _, _ in stages if (stage_dir(out, plan, k) / MODEL_FILE).exists()), default=0
    )
    for k, name, cfg in stages:
        if previous is not None:
            cfg.pretrained = str(previous)
        if teacher is not None and cfg.teachers:
            cfg.teachers = [teacher]
        cfg.validate()
        run_dir = stage_dir(out, plan, k)
        superseded = k < last_finished and (run_dir / "config.yaml").exists()
        done = train_stage(cfg, run_dir, skip_train, progress, superseded)
        record["stages"].append(
            {"stage": k, "recipe": name, "dir": str(run_dir), "pretrained": cfg.pretrained,
             "teachers": cfg.teachers, **done}
        )  # fmt: skip
        if done["status"] == "missing":
            break
        previous = run_dir / MODEL_FILE
    statuses = [s["status"] for s in record["stages"]]
    record["status"] = "missing" if "missing" in statuses else statuses[-1]
    if record["status"] != "missing":
        record["model"] = str(previous)
    secs = [s["train_seconds"] for s in record["stages"]]
    record["train_seconds"] = None if None in secs else round(sum(secs), 2)
    return record


def score_model(
    model: str | Path,
    manifest: Any,
    plan: FoldPlan,
    threshold: float | None,
    cache_dir: str | Path | None,
    batch_size: int = 32,
    device: str | None = None,
) -> dict:
    """Every item of each left-out and holdout source, its OOD items, the seen test items,
    under the model card's "not sure" rule (``threshold``, where given, as its bar)."""
    from wastenet.evaluate.predict import open_engine, predict_items

    engine = open_engine(model, device=device)
    if list(engine.meta.labels) != list(CLASSES):
        raise WasteNetError(f"{model}: labels {engine.meta.labels} are not {list(CLASSES)}")
    rule = NotSureRule.of(engine.meta, threshold)
    skipped: list[dict] = []

    def predict(items: list):
        pred = predict_items(engine, items, batch_size, cache_dir)
        skipped.extend(pred.skipped)
        return pred

    seen = predict([it for it in manifest.items(split="test") if it.source in plan.train_sources])
    # the bar refusing 5 % of what the model knows: the operating point, whatever
    # the card's own bar refuses
    bar = refusal_bar(rule.sureness(seen.probs)) if len(seen.probs) else None
    scored = {}
    for role, names in (("left_out", plan.left_out), ("holdout", plan.holdout)):
        for source in names:
            pred = predict(manifest.items(source=source))
            ood = manifest.items(split="ood", source=source)
            ood_probs = predict(ood).probs if ood else None
            scores = source_scores(pred.probs, pred.label_sets, rule, ood_probs, bar)
            scored[source] = {"role": role, **scores}
    return {
        "temperature": engine.meta.temperature,
        "not_sure_rule": rule.describe(),
        "input_size": list(engine.meta.input_size),
        "scored": scored,
        "seen_test": seen_test_scores(seen.probs, seen.label_sets, rule),
        "skipped": skipped,
    }


def write_outputs(result: dict, out: Path) -> None:
    """shift.json and shift.md, atomically: written after every fold."""
    out.mkdir(parents=True, exist_ok=True)
    result["summary"] = summarise(result["folds"])
    for name, text in (
        ("shift.json", json.dumps(result, indent=2)),
        ("shift.md", render_markdown(result)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, out / name)


def _new_result(manifest_path: Path, manifest: Any, threshold: float | None, **fields: Any) -> dict:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise WasteNetError(f"--threshold must be between 0 and 1, not {threshold}")
    return {
        "format_version": FORMAT_VERSION,
        "provenance": provenance(),
        "manifest": str(manifest_path),
        "manifest_hash": manifest.hash,
        "threshold": None if threshold is None else float(threshold),
        **fields,
        "folds": [],
    }


def run_shift(
    recipes: Sequence[tuple[str, Any]],
    manifest_path: str | Path,
    out: str | Path,
    sources: Sequence[str] | None = None,
    holdout_only: Sequence[str] = (),
    resolution: float | None = None,
    threshold: float | None = None,
    skip_train: bool = False,
    overrides: dict | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    teachers_from: str | Path | None = None,
    fold_models: dict[str, str] | None = None,
    folds: Sequence[str] | None = None,
) -> dict:
    """LOSO over the manifest's sources for a (chained) recipe ``[(name, TrainConfig)]``.

    Every fold's plan is checked before the first one trains, so a bad source name or a
    recipe that cannot run a fold fails in seconds, not hours in.
    """
    from wastenet.data.cache import default_cache_dir
    from wastenet.evaluate.dataset import load_manifest

    check_resolution(resolution)
    out, manifest_path = Path(out), Path(manifest_path)
    manifest = load_manifest(manifest_path)
    plans = plan_folds(id_sources(manifest), sources, holdout_only, folds)
    recipes = [(name, copy.deepcopy(cfg)) for name, cfg in recipes]
    for _, cfg in recipes:
        apply_resolution(cfg, resolution)
        named = {*(cfg.sources or ()), *(cfg.source_weights or {})}
        named |= {s for phase in cfg.phases for s in phase.sources or ()}
        check_names(f"sources named by recipe {cfg.name}", sorted(named), id_sources(manifest))
    given = given_models(fold_models or {}, plans, log)
    # every fold's stages are planned (and checked) here; the last one holds the fold's model
    finals = [stage_dir(out, p, stage_configs(recipes, p)[0][-1][0]) for p in plans]
    if skip_train and not given and not any((path / MODEL_FILE).exists() for path in finals):
        raise WasteNetError(f"{out}: no fold has a finished model to score (drop --skip-train)")
    if isinstance(recipes[0][1].pretrained, str):
        log(f"warning: stage 1 starts from {recipes[0][1].pretrained}; if that model saw a "
            "left-out source, its fold is not unseen")  # fmt: skip
    to_train = [plan for plan in plans if plan.name not in given]  # a given fold needs no teacher
    teachers = fold_teachers(Path(teachers_from), to_train) if teachers_from else {}
    fixed = sorted({t for _, cfg in recipes for t in cfg.teachers or ()})
    if fixed and not teachers:
        log(f"warning: the recipe distils from {', '.join(fixed)} in every fold; if that model "
            "saw a left-out source, its fold is not unseen (--teachers-from gives each fold its own)")  # fmt: skip
    cache = cache_dir or recipes[0][1].cache_dir or default_cache_dir()
    result = _new_result(
        manifest_path, manifest, threshold,
        mode="loso", recipes=[n for n, _ in recipes], overrides=overrides or {},
        resolution_pct=resolution, holdout_only=list(holdout_only),
        teachers_from=None if teachers_from is None else str(teachers_from),
        fold_models=dict(fold_models or {}),
    )  # fmt: skip
    for plan in plans:
        log(f"fold {plan.name}: training on {', '.join(plan.train_sources)}")
        if plan.name in given:
            trained = {"stages": [], "dropped_phases": [], "status": "given"}
            trained.update(model=given[plan.name], train_seconds=None)
        else:
            trained = train_fold(recipes, plan, out, skip_train, progress, teachers.get(plan.name))
        fold = {**plan.__dict__, **trained}
        if fold["model"]:
            fold.update(score_model(fold["model"], manifest, plan, threshold, cache))
        else:
            log(f"fold {plan.name}: no finished model (--skip-train); not scored")
        result["folds"].append(fold)
        write_outputs(result, out)
    return result


def score_existing(
    model: str | Path,
    trained_on: Sequence[str],
    manifest_path: str | Path,
    out: str | Path,
    holdout_only: Sequence[str] = (),
    threshold: float | None = None,
    cache_dir: str | Path | None = None,
    device: str | None = None,
) -> dict:
    """A bundle already trained on ``trained_on``: every other source is scored as unseen."""
    from wastenet.data.cache import default_cache_dir
    from wastenet.evaluate.dataset import load_manifest

    model, out, manifest_path = Path(model), Path(out), Path(manifest_path)
    if not model.is_file():
        raise WasteNetError(f"{model}: no such model file")
    manifest = load_manifest(manifest_path)
    plan = plan_existing(id_sources(manifest), trained_on, holdout_only)
    result = _new_result(
        manifest_path, manifest, threshold,
        mode="existing", recipes=[], overrides={}, resolution_pct=None,
        holdout_only=list(holdout_only),
    )  # fmt: skip
    fold = {**plan.__dict__, "stages": [], "dropped_phases": [], "status": "existing"}
    fold.update(model=str(model), train_seconds=None)
    cache = cache_dir or default_cache_dir()
    fold.update(score_model(model, manifest, plan, threshold, cache, device=device))
    result["folds"].append(fold)
    write_outputs(result, out)
    return result
