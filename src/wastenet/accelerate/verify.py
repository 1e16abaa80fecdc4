"""Verify exported artifacts against the bundle they were made from (or, where only the
exported FP32 ONNX is at hand, that ONNX: the engine they replace), on the test split
(or several splits pooled: val + test is twice the evidence of test alone).

For each artifact: its top-1 accuracy next to the source model's, top-1 agreement
with the source, and the largest probability difference. The source bundle is
``--reference`` or found through ``export.json`` / a ``.safetensors`` beside the
artifact whose sha256 equals the artifact's ``source_hash``; a reference with
another hash is refused (the artifact was made from another model).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from wastenet.accelerate.engine import Engine, load_engine, resolve_artifact
from wastenet.accelerate.formats import format_for_path
from wastenet.data.manifest import load_split
from wastenet.errors import ModelFileError, WasteNetError
from wastenet.evaluate.metrics import agreement
from wastenet.evaluate.predict import Predictions, predict_items
from wastenet.meta import BundleMeta, file_sha256
from wastenet.onnx_file import read_onnx_meta
from wastenet.provenance import provenance

BATCH = 16


@dataclass
class VerifyRow:
    artifact: str
    format: str
    reference: str
    images: int
    accuracy: float
    reference_accuracy: float
    drop_points: float
    agreement: float
    max_prob_diff: float
    passed: bool


def find_reference(artifact: Path, meta: BundleMeta, reference: Path | None = None) -> Path:
    """The source bundle of ``artifact``; its sha256 must equal ``meta.source_hash``."""
    if not meta.source_hash:
        raise ModelFileError(f"{artifact}: its metadata names no source model (no source_hash)")
    if reference is not None:
        if not Path(reference).is_file():
            raise ModelFileError(f"{reference}: no such reference bundle")
        same = file_sha256(reference) == meta.source_hash or (
            Path(reference).resolve() != artifact.resolve()
            and _fp32_onnx_of(Path(reference), meta.source_hash)
        )
        if not same:
            raise ModelFileError(
                f"{artifact}: was made from another model than {reference} "
                f"(source_hash {meta.source_hash[:12]}... differs)"
            )
        return Path(reference)
    candidates: list[Path] = []
    record = artifact.parent / "export.json"
    if record.exists():
        try:
            entry = json.loads(record.read_text()).get("artifacts", {}).get(artifact.name, {})
        except (OSError, json.JSONDecodeError):
            entry = {}
        if entry.get("source"):
            candidates.append(Path(entry["source"]))
    for folder in (artifact.parent, artifact.parent.parent):
        candidates += sorted(folder.glob("*.safetensors"))
    for cand in candidates:
        if cand.is_file() and file_sha256(cand) == meta.source_hash:
            return cand
    for cand in sorted(artifact.parent.glob("*.onnx")):  # no bundle: the FP32 ONNX of it
        if cand != artifact and _fp32_onnx_of(cand, meta.source_hash):
            return cand
    raise ModelFileError(
        f"{artifact}: its source bundle (sha256 {meta.source_hash[:12]}...) was not found "
        "beside it; pass --reference BUNDLE"
    )


def _fp32_onnx_of(path: Path, source_hash: str) -> bool:
    """True when ``path`` is an FP32 ONNX exported from the bundle with ``source_hash``."""
    if format_for_path(path).name != "onnx":
        return False
    try:
        return read_onnx_meta(path).source_hash == source_hash
    except WasteNetError:
        return False


def predict_split(engine: Engine, items: list, loaded: dict) -> tuple[np.ndarray, float]:
    """Probabilities and set-aware top-1 (percent) on ``items``; decoded images are shared
    between engines of one input size. Every image must load: verify scores all or none."""
    pred: Predictions = predict_items(engine, items, BATCH, loaded=loaded)
    if pred.skipped:
        raise WasteNetError(pred.skipped[0]["reason"])
    return pred.probs, 100.0 * pred.score().accuracy


def verify(
    artifacts: list[str | Path],
    manifest: str | Path,
    split: str | Sequence[str] = "test",
    max_drop: float = 0.3,
    reference: str | Path | None = None,
    threads: int = 0,
) -> list[VerifyRow]:
    items = load_split(manifest, split)
    loaded: dict = {}
    ref_probs: dict[Path, tuple[np.ndarray, float]] = {}
    rows = []
    for art in artifacts:
        path = resolve_artifact(art)
        engine = load_engine(path, threads=threads)
        ref = find_reference(path, engine.meta, Path(reference) if reference else None)
        if ref not in ref_probs:
            with load_engine(ref, threads=threads) as ref_engine:
                ref_probs[ref] = predict_split(ref_engine, items, loaded)
        rp, racc = ref_probs[ref]
        probs, acc = predict_split(engine, items, loaded)
        drop = racc - acc
        agree, max_diff = agreement(probs, rp)
        rows.append(
            VerifyRow(
                str(path), engine.name, str(ref), len(items), acc, racc, drop,
                100.0 * agree, max_diff, drop <= max_drop,
            )
        )  # fmt: skip
        engine.close()
    return rows


def markdown(rows: list[VerifyRow], max_drop: float) -> str:
    lines = [
        f"Verification (fail past an accuracy drop of {max_drop} points)",
        "",
        "| artifact | format | images | top-1 % | source top-1 % | drop (pts) | agreement % | max prob diff | result |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {Path(r.artifact).name} | {r.format} | {r.images} | {r.accuracy:.2f} | "
            f"{r.reference_accuracy:.2f} | {r.drop_points:+.2f} | {r.agreement:.2f} | "
            f"{r.max_prob_diff:.4f} | {'pass' if r.passed else 'FAIL'} |"
        )
    return "\n".join(lines)


def write_reports(rows: list[VerifyRow], out_dir: Path, max_drop: float) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    js, md = out_dir / "verify.json", out_dir / "verify.md"
    record = {"max_drop": max_drop, "rows": [asdict(r) for r in rows], "provenance": provenance()}
    js.write_text(json.dumps(record, indent=2))
    md.write_text(markdown(rows, max_drop) + "\n")
    return js, md
