"""The former home of ``calibrate_bundle``, now ``wastenet.train.calibrate``.

A ``wastenet train`` process started before the move still calls
``calibrate_bundle(model.safetensors, ...)`` from here at its end and expects the bundle
calibrated in place, as it was then; this keeps such a run's result. Everything else
uses ``wastenet.train.calibrate``, which never rewrites a bundle. Remove this module once
no such run is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def calibrate_bundle(
    bundle: str | Path,
    manifest: str | Path,
    split: str = "val",
    cache_dir: str | Path | None = None,
    out: str | Path | None = None,
    sources: Sequence[str] | None = None,
) -> dict:
    from wastenet.models import load_bundle, save_bundle
    from wastenet.train.calibrate import calibrated_meta

    model, meta = load_bundle(bundle)
    meta, summary = calibrated_meta(model, meta, manifest, split, cache_dir, sources)
    save_bundle(model, meta, Path(out) if out else Path(bundle))
    return summary
