"""Export a bundle to the formats of the table; one call builds what each row needs.

Each row of the format table names its builder (``Format.builder``, a function of a
build module taking the ``Exporter``, the row and its options). The FP32 ONNX file is
the hub: FP16, INT8, OpenVINO and TensorRT are all made from it, and every artifact carries the bundle's metadata with ``source_hash`` = sha256 of
the bundle file. Rows that cannot run here (TensorRT without a GPU) are reported as
skipped with their reason. ``export.json`` in the output folder records what was
made from which bundle, so ``wastenet verify`` finds the source model.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wastenet.accelerate.calibration import CalibrationSet
from wastenet.accelerate.formats import (
    FORMATS,
    Format,
    artifact_path,
    format_for_path,
    get_format,
)
from wastenet.errors import ConfigError
from wastenet.meta import BundleMeta, file_sha256

log = logging.getLogger(__name__)
RECORD_NAME = "export.json"


@dataclass
class CalibSource:
    """Where INT8 calibration images come from: a manifest's split or a folder."""

    manifest: str | Path | None = None
    folder: str | Path | None = None
    split: str = "train"


@dataclass
class ExportResult:
    format: str
    status: str  # ok | skipped | failed
    path: Path | None = None
    reason: str = ""
    seconds: float = 0.0
    record: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["path"] = str(self.path) if self.path else None
        return out


def plan(names: list[str], options: dict[str, Any]) -> list[tuple[Format, dict]]:
    """Rows for ``names`` with their validated options; shared options go where allowed."""
    if not names:
        raise ConfigError("no format given (see wastenet export --list)")
    rows = [get_format(n) for n in dict.fromkeys(names)]
    given = {k: v for k, v in options.items() if v is not None}
    unused = sorted(k for k in given if not any(k in r.options for r in rows))
    if unused:
        raise ConfigError(
            f"option(s) {', '.join(unused)} apply to none of {', '.join(r.name for r in rows)}"
        )
    return [(r, r.validate({k: v for k, v in given.items() if k in r.options})) for r in rows]


class Exporter:
    """Builds artifacts for one source model into ``out_dir`` under ``stem``."""

    def __init__(
        self,
        model,
        meta: BundleMeta,
        out_dir: Path,
        stem: str,
        calib: CalibSource,
        onnx: Path | None = None,
    ):
        """``onnx``: an FP32 ONNX already made from the model, the hub instead of exporting
        ``model`` (which may then be None)."""
        self.model = model
        self.meta = meta
        self.out_dir = Path(out_dir)
        self.stem = stem
        self.calib_source = calib
        self._calib: dict[int, CalibrationSet] = {}
        self._built: dict[str, tuple[Path, dict]] = {}
        if onnx is not None:
            self._built["onnx"] = (Path(onnx), {"given": True})

    def path(self, name: str) -> Path:
        return artifact_path(self.out_dir, self.stem, get_format(name))

    def calibration(self, count: int) -> CalibrationSet:
        if count not in self._calib:
            src = self.calib_source
            self._calib[count] = CalibrationSet.from_source(
                self.meta, src.manifest, src.folder, count, src.split
            )
        return self._calib[count]

    def onnx(self) -> Path:
        """The FP32 ONNX hub, built once (the other rows are made from it)."""
        fmt = get_format("onnx")
        return self.build(fmt, fmt.validate({}))[0]

    def built(self, name: str) -> Path | None:
        """The artifact of row ``name`` if this exporter has built it already."""
        made = self._built.get(name)
        return made[0] if made else None

    def build(self, fmt: Format, opts: dict) -> tuple[Path, dict]:
        """Make one artifact with its row's builder (once); returns its path and a record
        of how it was made."""
        if fmt.name not in self._built:
            self._built[fmt.name] = builder_for(fmt)(self, fmt, opts)
        return self._built[fmt.name]

    def run(self, rows: list[tuple[Format, dict]], source: Path | None) -> list[ExportResult]:
        results = []
        for fmt, opts in rows:
            if fmt.builder is None:  # the bundle itself is the artifact
                results.append(ExportResult(fmt.name, "ok" if source else "skipped", source,
                                            "" if source else "no bundle file"))  # fmt: skip
                continue
            reason = _export_blocker(fmt)
            if reason:
                results.append(ExportResult(fmt.name, "skipped", reason=reason))
                continue
            start = time.perf_counter()
            path, rec = self.build(fmt, opts)
            results.append(
                ExportResult(fmt.name, "ok", path, seconds=time.perf_counter() - start, record=rec)
            )
            log.info("%s -> %s", fmt.name, path)
        return results


def builder_for(fmt: Format) -> Callable[[Exporter, Format, dict], tuple[Path, dict]]:
    """The function that builds ``fmt``'s artifacts: the row names it
    (``module:function`` under ``wastenet.accelerate``)."""
    if not fmt.builder:
        raise ConfigError(f"format {fmt.name}: no exporter")
    module, _, function = fmt.builder.partition(":")
    return getattr(importlib.import_module(f"wastenet.accelerate.{module}"), function)


def _export_blocker(fmt: Format) -> str | None:
    """Why a row cannot be built here (its runtime, or onnx/torch for the export side)."""
    reason = fmt.unavailable_reason()
    if reason:
        return reason
    import importlib.util

    missing = [p for p in ("torch", "onnx") if importlib.util.find_spec(p) is None]
    return (
        f"exporting needs {', '.join(missing)} (pip install wastenet[train])" if missing else None
    )


def export_model(
    model,
    meta: BundleMeta,
    formats: list[str],
    out_dir: str | Path,
    stem: str = "model",
    options: dict[str, Any] | None = None,
    calib: CalibSource | None = None,
    source: Path | None = None,
) -> list[ExportResult]:
    """Export an in-memory model (``meta.source_hash`` should name its bundle)."""
    rows = plan(formats, options or {})
    exporter = Exporter(model, meta, Path(out_dir), stem, calib or CalibSource())
    results = exporter.run(rows, source)
    write_record(Path(out_dir), source, meta, results)
    return results


def export_bundle(
    bundle: str | Path,
    formats: list[str],
    out_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    calib: CalibSource | None = None,
) -> list[ExportResult]:
    """Export a ``.safetensors`` bundle; artifacts go beside it unless ``out_dir`` is given."""
    from wastenet.models import load_bundle

    bundle = Path(bundle)
    plan(formats, options or {})  # fail on bad options before loading anything
    model, meta = load_bundle(bundle)
    meta = dataclasses.replace(meta, source_hash=file_sha256(bundle))
    stem = bundle.name.removesuffix(".safetensors")
    out = Path(out_dir) if out_dir else bundle.parent
    return export_model(model, meta, formats, out, stem, options, calib, source=bundle.resolve())


def export_onnx_artifact(
    onnx_path: str | Path,
    formats: list[str],
    out_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
    calib: CalibSource | None = None,
) -> list[ExportResult]:
    """Make engines from an exported FP32 ONNX (the bundled model, say) without its
    ``.safetensors``: every row built from the ONNX hub (INT8, FP16, OpenVINO, TensorRT).
    The artifacts keep the ONNX's metadata, ``source_hash`` included, so ``verify``
    compares them with that ONNX (the engine they replace)."""
    from wastenet.onnx_file import read_onnx_meta

    onnx_path = Path(onnx_path)
    if format_for_path(onnx_path).name != "onnx":
        raise ConfigError(f"{onnx_path}: give an FP32 .onnx (or a .safetensors bundle)")
    rows = plan(formats, options or {})
    blocked = [fmt.name for fmt, _ in rows if fmt.name in ("torch", "onnx")]
    if blocked:
        raise ConfigError(
            f"{onnx_path}: {', '.join(blocked)} cannot be made from an ONNX file; "
            "export the .safetensors bundle for them"
        )
    meta = read_onnx_meta(onnx_path)
    stem = onnx_path.name.removesuffix(".onnx")
    out = Path(out_dir) if out_dir else onnx_path.parent
    exporter = Exporter(None, meta, out, stem, calib or CalibSource(), onnx=onnx_path.resolve())
    results = exporter.run(rows, None)
    write_record(out, onnx_path.resolve(), meta, results)
    return results


def write_record(out_dir: Path, source: Path | None, meta: BundleMeta, results) -> Path:
    """Add this export's artifacts to ``out_dir/export.json`` (kept across exports)."""
    path = out_dir / RECORD_NAME
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        data = {}
    artifacts = data.get("artifacts", {})
    for r in results:
        if r.status == "ok" and r.path:
            artifacts[Path(r.path).name] = {
                "format": r.format,
                "source": str(source) if source else None,
                "source_hash": meta.source_hash,
                "record": r.record,
            }
    data["artifacts"] = artifacts
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def available_formats() -> list[str]:
    """Names of the rows that can be exported on this machine."""
    return [f.name for f in FORMATS if _export_blocker(f) is None]
