"""The inputs of ``wastenet report``: result files found in folders, each with its kind and
where it came from (command, date, machine).

A JSON result is recognised by its shape, not its name: ``wastenet evaluate``'s report.json,
``verify``/``bench`` JSON, the bin's run.json (its folder is a bin run), ``power`` JSON,
``shift.json``, realworld.json and the files of benchmarks/. A folder with config.yaml and
metrics.csv is a training run. The bundled model's folder (ONNX, evaluation/, training/)
is read by default. Deploy side: standard library and numpy only.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from wastenet.errors import WasteNetError
from wastenet.meta import META_KEY, safetensors_parameter_count
from wastenet.onnx_file import count_onnx_parameters, read_onnx_metadata

UNKNOWN = "unknown"
MAX_JSON_BYTES = 20_000_000
SKIP_DIRS = {".git", "__pycache__", "cache", "node_modules", ".venv"}
BUNDLED = Path(__file__).resolve().parents[1] / "assets" / "model"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Source:
    """One input: a JSON result, a training run or a bin run folder."""

    label: str  # how the report names it: a relative path, never a machine path
    kind: str
    data: dict
    prov: dict  # command, date, machine (UNKNOWN where the file does not say), note
    path: Path | None = None


@dataclass
class Inputs:
    sources: list[Source] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # JSON files of no kind read here
    searched: list[str] = field(default_factory=list)
    model: dict | None = None  # the bundled model: params, size_mb, meta, label

    def of(self, *kinds: str) -> list[Source]:
        return [s for s in self.sources if s.kind in kinds]


def _text(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value) if value not in (None, "") else UNKNOWN


def read_provenance(data: dict) -> dict:
    """command/date/machine from ``provenance`` (what the writers record now) or from the
    top-level keys some older benchmark results used; UNKNOWN for the rest."""
    prov = data.get("provenance") if isinstance(data.get("provenance"), dict) else {}
    out = {}
    for key in ("command", "date", "machine"):
        out[key] = _text(prov.get(key) or data.get(key))
    if prov.get("note"):
        out["note"] = str(prov["note"])
    return out


def classify(data: object) -> str | None:
    """The kind of a result JSON from its keys, or None for anything else."""
    if not isinstance(data, dict):
        return None
    rows = data.get("rows")
    first = rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}
    states = data.get("states")
    state0 = states[0] if isinstance(states, list) and states else {}
    checks = (
        ("soak", "checks" in data and isinstance(data.get("samples"), list)),
        ("bench", "p50_ms" in first and "format" in first),
        ("verify", "drop_points" in first),
        ("compare_eval", "reports" in data and isinstance(rows, list)),
        ("evaluate", "overall" in data and "per_source" in data),
        ("compare_models", {"old", "new", "per_source", "pooled"} <= data.keys()),
        ("compare_shift", {"before", "after", "rows", "mean", "targets"} <= data.keys()),
        ("shift", "folds" in data and "mode" in data),
        ("realworld", "per_category" in data and "accuracy_including_errors" in data),
        ("run", "config" in data and isinstance(data.get("summary"), dict)),
        ("loop", isinstance(data.get("runs"), list) and "memory" in data),
        ("power", isinstance(state0, dict) and "mean_w" in state0),
        ("rapl", "zones" in data and "mean_w" in data),
        ("gpu_torch", "engine_fp32_b1" in data),
        ("object_crop", "whole_frame" in data and "crop_to_object" in data),
    )
    return next((kind for kind, hit in checks if hit), None)


def count_parameters(path: str | Path) -> int | None:
    """Parameters of an ONNX or safetensors file, or None (another format, or unreadable)."""
    path = Path(path)
    try:
        if path.suffix == ".onnx" and path.is_file():
            return count_onnx_parameters(path)
        if path.suffix == ".safetensors" and path.is_file():
            return safetensors_parameter_count(path)
    except (OSError, ValueError, WasteNetError):
        return None
    return None


# --- folders ------------------------------------------------------------------------------


def _label(path: Path, root: Path) -> str:
    """A path to show: relative to the working folder, the repository or the package, or
    else to the searched folder's parent; never an absolute machine path."""
    path = path.resolve()
    for base, prefix in ((Path.cwd(), ""), (REPO, ""), (BUNDLED.parents[1], "wastenet/")):
        try:
            return prefix + path.relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    try:
        return path.relative_to(root.resolve().parent).as_posix()
    except ValueError:
        return path.name


def _read_json(path: Path) -> object:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def read_train_run(folder: Path) -> dict:
    """A training run: its config (name, model, resolution), per-epoch metrics and, where
    the bundle is there, the test metrics the run recorded in it."""
    import yaml

    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    with open(folder / "metrics.csv", encoding="utf-8", newline="") as handle:
        rows = [
            {k: _number(v) for k, v in row.items() if k}
            for row in csv.DictReader(handle)
            if row.get("epoch")
        ]
    run = {"config": config if isinstance(config, dict) else {}, "epochs": rows}
    bundle = folder / "model.safetensors"
    if bundle.is_file():
        from wastenet.meta import read_bundle_meta

        with contextlib.suppress(WasteNetError):
            run["metrics"] = read_bundle_meta(bundle).metrics
        run["parameters"] = count_parameters(bundle)
    return run


def _number(text: str):
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def read_bin_run(folder: Path) -> dict:
    """The bin run's measured latency next to equations 1-2 (``analysis.latency``)."""
    from wastenet.analysis.latency import compare_run, load_run

    run = load_run(folder)
    out = {"fps": run["fps"], "ips": run["ips"], "frames": run["frames"]}
    try:
        out["latency"] = compare_run(run)
    except WasteNetError as exc:
        out["latency_note"] = str(exc)
    return out


def _add_json(inputs: Inputs, path: Path, root: Path, seen: set) -> None:
    data = _read_json(path)
    kind = classify(data)
    label = _label(path, root)
    seen.add(path.resolve())  # read once, also when two roots overlap
    if kind is None:
        inputs.ignored.append(label)
        return
    if kind == "run":
        try:
            data = {**data, "measured": read_bin_run(path.parent)}
        except WasteNetError as exc:
            data = {**data, "measured": {"note": str(exc)}}
        label = _label(path.parent, root)
    inputs.sources.append(Source(label, kind, data, read_provenance(data), path))


def _add_train(inputs: Inputs, folder: Path, root: Path) -> None:
    try:
        data = read_train_run(folder)
    except (OSError, ValueError) as exc:
        inputs.ignored.append(f"{_label(folder, root)} ({exc})")
        return
    prov_file = _read_json(folder / "provenance.json")
    prov = read_provenance({"provenance": prov_file} if isinstance(prov_file, dict) else {})
    inputs.sources.append(Source(_label(folder, root), "train", data, prov, folder))


def scan(inputs: Inputs, root: Path, seen: set) -> None:
    """Every result under ``root`` (a folder or one JSON file)."""
    if root.is_file():
        if root.resolve() not in seen:
            _add_json(inputs, root, root.parent, seen)
        return
    if not root.is_dir():
        raise WasteNetError(f"{root}: no such results folder or file")
    inputs.searched.append(_label(root, root))
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        here = Path(folder)
        if "config.yaml" in files and "metrics.csv" in files and here.resolve() not in seen:
            seen.add(here.resolve())
            _add_train(inputs, here, root)
        for name in sorted(files):
            path = here / name
            if name.endswith(".json") and path.resolve() not in seen:
                if name in ("provenance.json", "state.json") and (here / "metrics.csv").is_file():
                    continue  # part of a training run
                _add_json(inputs, path, root, seen)


def read_bundled(folder: Path = BUNDLED) -> dict | None:
    """The bundled ONNX model: parameters, size and metadata (None where it is absent)."""
    onnx = folder / "wastenet-lite0.onnx"
    if not onnx.is_file():
        return None
    out = {
        "label": _label(onnx, folder),
        "parameters": count_parameters(onnx),
        "size_mb": onnx.stat().st_size / 1e6,
    }
    try:
        out["meta"] = json.loads(read_onnx_metadata(onnx)[META_KEY])
    except (WasteNetError, KeyError, ValueError):  # unreadable, no metadata, bad JSON
        out["meta"] = None
    return out


def default_results() -> Path | None:
    """benchmarks/results of the working folder, else of the repository the package is in."""
    for base in (Path.cwd(), REPO):
        if (base / "benchmarks" / "results").is_dir():
            return base / "benchmarks" / "results"
    return None


def collect(results: list[str | Path] = (), defaults: bool = True) -> Inputs:
    """Every input: benchmarks/results and the bundled model (``defaults``), then ``results``."""
    inputs, seen = Inputs(), set()
    roots = [Path(r) for r in results]
    if defaults:
        committed = default_results()
        roots = ([committed] if committed else []) + [BUNDLED] + roots
        inputs.model = read_bundled()
    for root in roots:
        scan(inputs, root, seen)
    inputs.sources.sort(key=lambda s: (s.kind, s.label))
    return inputs
