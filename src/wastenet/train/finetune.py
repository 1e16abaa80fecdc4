"""Fine-tune a trained model on sources added to its data: the improvement loop's retrain.

The model's own recipe, started from the model, on its sources plus the added ones; the
sources it was trained on replayed at a share of their items each epoch (``replay``) and
distilled from the model it started from; its outlier exposure kept; a few epochs at a
low learning rate, then one FixRes epoch. The new-place curve
(``benchmarks/new_place_curve.py``, the model README's new-place table) measured the
recipe without the teacher and the outliers (``keep_what_it_knows=False``). Added sources come from
``wastenet samples export`` (a bin's reviewed samples, and with ``--self-label`` its
own sure answers, train-only). Then export, ``wastenet gate`` against the model in
service, and ``wastenet update publish``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wastenet.errors import WasteNetError

EPOCHS, LR, REPLAY = 3, 5e-5, 0.1  # the new-place curve's


def fine_tune_config(
    model: str | Path,
    manifest: str | Path,
    added: Sequence[str],
    trained_on: Sequence[str] | None = None,
    epochs: int = EPOCHS,
    lr: float = LR,
    replay: float = REPLAY,
    name: str | None = None,
    max_steps: int | None = None,
    cache_dir: str | None = None,
    teacher: str | Path | None = None,
    keep_what_it_knows: bool = True,
):
    """The fine-tuning TrainConfig for ``model`` (a .safetensors bundle) on ``manifest``.

    ``keep_what_it_knows``: the model's own outlier exposure stays on (at its recipe's
    weight), and the replayed old sources are distilled from ``teacher`` (the model as it
    was: the file the fine-tune started from) at its recipe's distillation weight.
    Without them (the new-place curve's recipe), fine-tuning the bundled model on a new
    place lost 11 points of outliers answered "not sure" and 2 on web-mixed
    (docs/experiments/2026-12-03-the-loop-on-a-place-the-bundled-model-never-saw.md).

    The card's "not sure" rule and bar are not the recipe's: ``wastenet finetune`` sets
    them to the old model's (``operating_point``: its rule, and the share of the val items
    of the sources it knew that it refuses), so a bin answers about as often after the
    update as before (the new place, which it now knows, included)."""
    from wastenet.data.manifest import load_manifest
    from wastenet.meta import read_bundle_meta
    from wastenet.train.config import train_config_from_dict

    model = Path(model)
    if model.suffix != ".safetensors":
        raise WasteNetError(
            f"{model}: fine-tuning starts from a .safetensors bundle; an FP32 .onnx is "
            "imported first (`weights_to_finetune`)"
        )
    if not model.is_file():
        raise WasteNetError(f"{model}: no such model file")
    meta = read_bundle_meta(model)
    old = list(trained_on or meta.trained_sources or _all_sources_of(meta) or [])
    if not old:
        raise WasteNetError(
            f"{model}: its card does not name its sources, nor can its manifest be read; "
            "pass --trained-on"
        )
    known = load_manifest(manifest).source_names
    unknown = sorted(set(added) - set(known))
    if unknown or not added:
        raise WasteNetError(
            f"--add {', '.join(unknown) or '(none)'}: give sources of {manifest} "
            f"({', '.join(known)}) to fine-tune on"
        )
    if not 0 < replay <= 1:
        raise WasteNetError(f"--replay {replay:g}: a share of the old items in (0, 1]")
    replayed = [s for s in old if s not in added]
    recipe = meta.train_config
    kept = keep_what_it_knows and replayed
    overrides = {
        "name": name or Path(manifest).parent.name,
        "pretrained": str(model),
        "manifest": str(manifest),
        "sources": list(dict.fromkeys([*old, *added])),
        "source_weights": {s: replay for s in replayed},
        "teachers": [str(teacher or model)] if kept else None,
        "distill_sources": replayed if kept else None,
        "distill_weight": recipe.get("distill_weight", 0.5),
        "ood_weight": recipe.get("ood_weight", 0.0) if keep_what_it_knows else 0.0,
        "ood_sources": None,
        "early_stopping_patience": None,
        "max_steps_per_epoch": max_steps,
        "not_sure_refuse": None,  # the old model's operating point, set by the caller
        "not_sure_rule": None,
        "phases": [
            {"name": "main", "epochs": epochs, "lr": lr},
            {"name": "fixres", "epochs": 1, "lr": lr / 5, "augment": "light"},
        ],
        **({"cache_dir": cache_dir} if cache_dir else {}),
    }
    return train_config_from_dict({**recipe, **overrides}, f"fine-tuning {model}")


def operating_point(
    model: str | Path, manifest: str | Path, sources: Sequence[str], cache_dir=None
) -> tuple[float, str]:
    """The share of ``sources``' val items ``model`` (any artifact, or a bundle) answers
    "not sure" to under its own card, and the card's rule (``certainty@2``): the operating
    point a fine-tune of it keeps."""
    from wastenet.data.manifest import load_manifest
    from wastenet.evaluate.predict import open_engine, predict_items
    from wastenet.sureness import NotSureRule, rule_text

    items = [it for it in load_manifest(manifest).items(split="val") if it.source in sources]
    if not items:
        raise WasteNetError(f"{manifest}: no val items of {', '.join(sources)}")
    with open_engine(Path(model)) as engine:
        pred = predict_items(engine, items, cache_dir=cache_dir)
        rule = NotSureRule.of(engine.meta)
        share = float((~rule.sure(pred.probs)).mean())
        return share, rule_text(engine.meta.not_sure_score, engine.meta.not_sure_temperature)


def _all_sources_of(meta) -> list[str] | None:
    """A model trained on every source of its manifest: those sources, where it is here."""
    from wastenet.data.manifest import load_manifest

    path = meta.train_config.get("manifest")
    if not path or not Path(path).is_file():
        return None
    return load_manifest(path).source_names


IMPORTED = "imported.safetensors"
CALIBRATION_IMAGES = 256


def weights_to_finetune(
    model: str | Path,
    manifest: str | Path,
    out: str | Path,
    cache_dir: str | None = None,
    trained_on: Sequence[str] | None = None,
) -> Path:
    """``model`` where it is a .safetensors bundle; an FP32 .onnx (the bundled model) is
    imported into ``out/imported.safetensors`` (``wastenet.models.onnx_import``), its
    batch norms measured on up to 256 training images of the sources it was trained on."""
    model = Path(model)
    if model.suffix != ".onnx":
        return model
    if not model.is_file():
        raise WasteNetError(f"{model}: no such model file")
    from wastenet.data.manifest import load_manifest
    from wastenet.evaluate.dataset import load_images
    from wastenet.models.bundle import save_bundle
    from wastenet.models.onnx_import import import_onnx
    from wastenet.onnx_file import read_onnx_meta
    from wastenet.preprocess import normalize

    meta = read_onnx_meta(model)
    sources = set(trained_on or meta.trained_sources or [])
    items = [it for it in load_manifest(manifest).items(split="train")
             if not sources or it.source in sources]  # fmt: skip
    if not items:
        raise WasteNetError(f"{manifest}: no training items of {model}'s sources to import it with")
    pick = np.random.default_rng(0).permutation(len(items))[:CALIBRATION_IMAGES]
    images, _, _ = load_images(
        [items[i] for i in sorted(pick)], (meta.height, meta.width), cache_dir
    )
    imported, meta = import_onnx(model, normalize(images, meta.mean, meta.std))
    return save_bundle(imported, meta, Path(out) / IMPORTED)
