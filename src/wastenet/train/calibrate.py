"""``wastenet calibrate``: fit one temperature on the validation split, a build step.

The numbers (temperature scaling, NLL, expected calibration error) live in
``wastenet.evaluate.temperature``, torch-free. Here the bundle's torch model runs over
the split and the fitted T goes into the metadata of a *new* bundle: a bundle is never
rewritten in place. ``wastenet train`` calls ``calibrated_meta`` before it writes
``model.safetensors``, so the shipped bundle is written once, calibrated.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.errors import WasteNetError
from wastenet.evaluate.temperature import (
    calibration_summary,
    fit_temperature,
    label_masks,
    rescale,
)
from wastenet.meta import BundleMeta
from wastenet.sureness import DEFAULT_REFUSALS, NotSureRule, parse_rule, refusal_bar


def calibrated_meta(
    model: Any,
    meta: BundleMeta,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = None,
    sources: Sequence[str] | None = None,
    not_sure: str | None = None,
    refuse: float | None = None,
) -> tuple[BundleMeta, dict]:
    """``meta`` with T fitted on ``split`` (and ``metrics["calibration"]``), and the
    summary; the torch ``model`` runs on the CPU from its raw logits. Writes nothing.

    ``not_sure`` (``certainty@2``, ``top_probability``: ``wastenet.sureness``) sets the
    card's "not sure" rule; with it or with ``refuse``, the rule's bar is set to refuse
    that share of the split's items (default 5 %), measured on the calibrated
    probabilities exactly as the bin computes them."""
    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.dataset import load_manifest
    from wastenet.evaluate.predict import predict_items

    items = load_manifest(manifest).items(split=split)
    if sources:
        items = [it for it in items if it.source in sources]
    if not items:
        raise WasteNetError(f"{manifest}: no {split} images to calibrate on")
    base = dataclasses.replace(meta, temperature=1.0)  # fit from the raw logits
    pred = predict_items(TorchEngine.from_model(model, base), items, cache_dir=cache_dir)
    if not pred.items:
        raise WasteNetError(
            f"{manifest}: none of the {len(items)} {split} images could be read "
            f"(first: {pred.skipped[0]['reason']})"
        )
    masks = label_masks(pred.label_sets, meta.labels)
    temperature = fit_temperature(pred.probs, masks)
    summary = dict(calibration_summary(pred.probs, masks, temperature), split=split)
    if pred.skipped:
        summary["skipped"] = len(pred.skipped)
    meta = dataclasses.replace(meta, temperature=temperature)
    if not_sure is not None or refuse is not None:
        meta, summary["not_sure"] = _with_not_sure_bar(
            meta, rescale(pred.probs, temperature), not_sure, refuse
        )
    meta.metrics = dict(meta.metrics, calibration=summary)
    return meta, summary


def _with_not_sure_bar(
    meta: BundleMeta, probs: np.ndarray, not_sure: str | None, refuse: float | None
) -> tuple[BundleMeta, dict]:
    """``meta`` with the rule ``not_sure`` (else its own) and the bar that refuses
    ``refuse`` of ``probs``' rows (the calibrated probabilities), and what it refuses."""
    refuse = DEFAULT_REFUSALS if refuse is None else refuse
    if not 0.0 <= refuse < 1.0:
        raise WasteNetError(f"--refuse {refuse}: a share in [0, 1)")
    if not_sure is not None:
        try:
            score, temperature = parse_rule(not_sure)
        except ValueError as exc:
            raise WasteNetError(f"--not-sure {exc}") from exc
        meta = dataclasses.replace(meta, not_sure_score=score, not_sure_temperature=temperature)
    sureness = NotSureRule.of(meta).sureness(probs)
    bar = refusal_bar(sureness, refuse)
    meta = dataclasses.replace(meta, not_sure_below=bar)
    refused = float((sureness < bar).mean())
    return meta, {"rule": NotSureRule.of(meta).describe(), "refuse": refuse, "refused": refused}


def default_out(bundle: str | Path) -> Path:
    """``model.safetensors`` -> ``model.calibrated.safetensors`` beside it."""
    bundle = Path(bundle)
    return bundle.with_name(bundle.name.removesuffix(".safetensors") + ".calibrated.safetensors")


def calibrate_bundle(
    bundle: str | Path,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    sources: Sequence[str] | None = None,
    not_sure: str | None = None,
    refuse: float | None = None,
) -> dict:
    """Fit T on ``split`` and write the calibrated bundle to ``out`` (default: beside the
    bundle, ``NAME.calibrated.safetensors``); the bundle read is left as it is."""
    from wastenet.models import load_bundle, save_bundle

    bundle = Path(bundle)
    out = Path(out) if out else default_out(bundle)
    if out.resolve() == bundle.resolve():
        raise WasteNetError(
            f"{out}: calibration writes a new bundle, never over the one it reads; "
            "give another --out"
        )
    model, meta = load_bundle(bundle)
    sources = sources or meta.trained_sources  # a source held out of training stays unseen
    meta, summary = calibrated_meta(
        model, meta, manifest, split, cache_dir, sources, not_sure, refuse
    )
    save_bundle(model, meta, out)
    return summary
