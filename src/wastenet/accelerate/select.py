"""Pick the engine the bin runs: the fastest verified artifact of a bundle this machine can run.

A bundle folder holds the FP32 ONNX (the reference every other engine is verified
against), the faster engines made from it, and ``verify.json`` (``wastenet verify``'s
rows). The rule, in order:

1. candidates are the FP32 ONNX and every artifact whose ``verify.json`` row passed;
2. a candidate whose runtime is not installed here drops out (the format table says
   what each needs), and so does ONNX Runtime's INT8 on an x86 CPU with AVX2 but no
   VNNI, where its kernels saturate and lose accuracy that ``verify`` did not see
   (``wastenet.accelerate.cpu``);
3. of the rest, the one with the lowest median latency here, measured once (batch 1,
   a few warm-up and timed runs each, about a second in all) and cached per machine,
   runtime versions and bundle; the FP32 ONNX wins ties within 5 %.

``wastenet run --model PATH`` bypasses all of this.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from wastenet.accelerate.cpu import int8_saturation_risk
from wastenet.accelerate.formats import FORMATS, format_for_path
from wastenet.data.cache import default_cache_dir
from wastenet.errors import ModelFileError
from wastenet.provenance import cpu_flags

log = logging.getLogger(__name__)

VERIFY_FILE = "verify.json"
CHOICE_FILE = "engine_choice.json"
WARMUP, TIMED = 3, 15
TIE = 0.05  # another engine must beat the reference by more than this share


@dataclass
class Candidate:
    path: Path
    format: str
    median_ms: float | None = None
    skipped: str | None = None  # why it cannot be chosen here


@dataclass
class Choice:
    path: Path
    reason: str
    candidates: list[Candidate]


def folder_reference(folder: Path) -> Path:
    """A bundle folder's reference: its one FP32 ONNX."""
    found = [
        p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name.endswith(".onnx") and format_for_path(p).name == "onnx"
    ]
    if len(found) != 1:
        raise ModelFileError(
            f"{folder}: {len(found) or 'no'} FP32 .onnx models in this folder; a model "
            "folder holds one, with the engines made from it and their verify.json"
        )
    return found[0]


def verified_artifacts(bundle_dir: Path) -> dict[str, bool]:
    """Artifact file name -> passed, from the bundle's ``verify.json`` (empty when absent)."""
    path = bundle_dir / VERIFY_FILE
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_text())["rows"]
        return {Path(r["artifact"]).name: bool(r["passed"]) for r in rows}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a wastenet verify result ({exc})") from exc


def candidates(reference: Path, flags: set[str] | None = None) -> list[Candidate]:
    """The reference and every verified artifact beside it, each with why it is skipped here."""
    bundle_dir = reference.parent
    passed = verified_artifacts(bundle_dir)
    suffixes = tuple(f.suffix for f in FORMATS)
    out = [Candidate(reference, format_for_path(reference).name)]
    for path in sorted(bundle_dir.iterdir()):
        if path == reference or not path.name.endswith(suffixes):
            continue
        fmt = format_for_path(path)
        cand = Candidate(path, fmt.name)
        if path.name not in passed:
            cand.skipped = "not verified"
        elif not passed[path.name]:
            cand.skipped = "failed verify"
        elif (reason := fmt.unavailable_reason()) is not None:
            cand.skipped = reason
        elif fmt.name == "ort-int8" and int8_saturation_risk(flags):
            cand.skipped = "AVX2 without VNNI: ONNX Runtime's INT8 saturates on this CPU"
        out.append(cand)
    return out


def _runtime_versions() -> dict[str, str]:
    versions = {}
    for dist in ("onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


def machine_key(cands: list[Candidate], flags: set[str] | None) -> str:
    """What the measurement depends on: the CPU, the runtimes, the artifacts."""
    files = [(c.path.name, c.path.stat().st_size, c.path.stat().st_mtime_ns) for c in cands]
    text = json.dumps(
        [platform.machine(), platform.processor(), sorted(flags or ()), _runtime_versions(),
         os.cpu_count(), files],
        sort_keys=True,
    )  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def time_engine(path: Path, threads: int = 0) -> float:
    """Median batch-1 latency in ms on a constant input of the model's size."""
    from wastenet.accelerate.engine import load_engine

    with load_engine(path, threads=threads) as engine:
        x = np.zeros((1, 3, engine.meta.height, engine.meta.width), np.float32)
        for _ in range(WARMUP):
            engine.predict(x)
        times = []
        for _ in range(TIMED):
            t0 = time.perf_counter()
            engine.predict(x)
            times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _read_cache(path: Path, key: str) -> dict | None:
    try:
        entry = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return entry if isinstance(entry, dict) else None


def _write_cache(path: Path, key: str, entry: dict) -> None:
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as exc:  # a read-only home: measure again next time
        log.warning("could not cache the engine choice in %s: %s", path, exc)


def choose_engine(reference: Path, threads: int = 0, cache: Path | None = None) -> Choice:
    """The engine to run from ``reference``'s bundle folder, and why (see the module doc)."""
    flags = cpu_flags()
    cands = candidates(reference, flags)
    usable = [c for c in cands if c.skipped is None]
    if len(usable) == 1:
        return Choice(reference, "the only engine this machine can run", cands)
    cache = cache or default_cache_dir() / CHOICE_FILE
    key = machine_key(usable, flags)
    entry = _read_cache(cache, key)
    cached = entry is not None and {c.path.name for c in usable} <= set(entry)
    for c in usable:
        c.median_ms = entry[c.path.name] if cached else time_engine(c.path, threads)
    if not cached:
        _write_cache(cache, key, {c.path.name: c.median_ms for c in usable})
    ref_ms = usable[0].median_ms
    best = min(usable, key=lambda c: c.median_ms)
    if best is usable[0] or best.median_ms > ref_ms * (1 - TIE):
        best = usable[0]
    how = "cached" if cached else "measured now, cached"
    reason = (
        f"fastest verified engine here: {best.median_ms:.1f} ms against "
        f"{ref_ms:.1f} ms for the FP32 ONNX ({how})"
    )
    return Choice(best.path, reason, cands)


def describe(choice: Choice) -> list[str]:
    """One line per candidate, for ``wastenet run`` to print."""
    lines = []
    for c in choice.candidates:
        mark = "*" if c.path == choice.path else " "
        what = c.skipped or (f"{c.median_ms:.1f} ms" if c.median_ms is not None else "usable")
        lines.append(f" {mark} {c.path.name} ({c.format}): {what}")
    return lines


def choice_dict(choice: Choice) -> dict:
    return {
        "path": str(choice.path),
        "reason": choice.reason,
        "candidates": [{**asdict(c), "path": c.path.name} for c in choice.candidates],
    }
