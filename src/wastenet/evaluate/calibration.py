"""``wastenet calibrate``: fit one temperature on the validation split, write it into a bundle.

The numbers (temperature scaling, NLL, expected calibration error) live in
``wastenet.evaluate.temperature``, torch-free, and are re-exported here; this module
is the build side's part: it loads and rewrites a ``.safetensors`` bundle (torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wastenet.errors import WasteNetError
from wastenet.evaluate.temperature import (  # noqa: F401  (re-exported: the old home)
    ECE_BINS,
    LOG_T_RANGE,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    label_masks,
    rescale,
    set_nll,
)


def calibrate_bundle(
    bundle: str | Path,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    sources: Sequence[str] | None = None,
) -> dict:
    """Fit T on ``split`` and write it into the bundle's metadata (atomically, weights kept)."""
    import dataclasses

    from wastenet.accelerate.backends.torch_backend import TorchEngine
    from wastenet.evaluate.dataset import load_images, load_manifest
    from wastenet.evaluate.predictor import predict_images
    from wastenet.models import load_bundle, save_bundle

    bundle = Path(bundle)
    model, meta = load_bundle(bundle)
    items = load_manifest(manifest).items(split=split)
    if sources:
        items = [it for it in items if it.source in sources]
    if not items:
        raise WasteNetError(f"{manifest}: no {split} images to calibrate on")
    wanted = len(items)
    images, items, skipped = load_images(items, (meta.height, meta.width), cache_dir)
    if not items:
        raise WasteNetError(
            f"{manifest}: none of the {wanted} {split} images could be read "
            f"(first: {skipped[0]['reason']})"
        )
    base = dataclasses.replace(meta, temperature=1.0)  # fit from the raw logits
    probs = predict_images(TorchEngine.from_model(model, base), images)
    masks = label_masks([it.labels for it in items], meta.labels)
    temperature = fit_temperature(probs, masks)
    summary = dict(calibration_summary(probs, masks, temperature), split=split)
    if skipped:
        summary["skipped"] = len(skipped)
    meta = dataclasses.replace(meta, temperature=temperature)
    meta.metrics = dict(meta.metrics, calibration=summary)
    save_bundle(model, meta, Path(out) if out else bundle)
    return summary
