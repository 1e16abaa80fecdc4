"""``evaluate_model``: one engine, one manifest -> report.json, report.md and figures.

Used by ``wastenet evaluate``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.accelerate.engine import Engine
from wastenet.classes import CLASSES, size_text
from wastenet.errors import WasteNetError
from wastenet.evaluate.corruptions import CORRUPTIONS
from wastenet.evaluate.dataset import limit_items
from wastenet.evaluate.predict import predict_images, predict_items
from wastenet.evaluate.scoring import score_predictions
from wastenet.meta import safetensors_parameter_count
from wastenet.provenance import provenance
from wastenet.sureness import NotSureRule, as_rule

REPORT_SECTIONS = ("model", "data", "overall", "per_source", "ood", "robustness")


def _check_labels(engine: Engine) -> None:
    labels = list(engine.meta.labels)
    if labels != list(CLASSES):
        raise WasteNetError(
            f"the model's labels {labels} are not WasteNet's classes {list(CLASSES)} in order"
        )


def evaluate_model(
    engine: Engine,
    manifest: Any,
    split: str = "test",
    threshold: NotSureRule | float | None = None,
    robustness: bool = True,
    severities: Sequence[int] = (1, 3, 5),
    corruptions: Sequence[str] = tuple(CORRUPTIONS),
    limit: int | None = None,
    out_dir: str | Path | None = None,
    model_path: str | Path | None = None,
    batch_size: int = 32,
    cache_dir: str | Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Score ``engine`` on ``manifest``'s ``split`` (+ its OOD items); optionally write files.

    ``manifest`` needs ``items(split=...)`` and ``ood_items(training=False)`` (the data
    stage's Manifest).
    ``threshold`` is the "not sure" rule: None, the card's (``NotSureRule.of``); a bare
    number, a top-probability threshold.
    ``limit`` caps the items per source (a quick look, not a result to quote).
    """
    log = log or (lambda _msg: None)
    _check_labels(engine)
    threshold = NotSureRule.of(engine.meta) if threshold is None else as_rule(threshold)
    if not 0.0 <= threshold.threshold <= 1.0:
        raise WasteNetError(f"threshold must be between 0 and 1, got {threshold.threshold}")
    meta = engine.meta
    items = limit_items(manifest.items(split=split), limit)
    if not items:
        raise WasteNetError(f"the manifest has no {split!r} items to evaluate")
    started = time.perf_counter()
    log(f"loading {len(items)} {split} images at {size_text(meta.input_size)} (HxW)")
    pred = predict_items(engine, items, batch_size, cache_dir)
    if not pred.items:
        raise WasteNetError(f"none of the {split!r} images could be read")
    ood = predict_items(
        engine, limit_items(manifest.ood_items(training=False), limit), batch_size, cache_dir
    )
    report: dict = score_predictions(
        pred.probs, pred.label_sets, pred.sources, threshold, ood.probs if ood.items else None
    )
    report["model"] = {
        "architecture": meta.architecture,
        "input_size": list(meta.input_size),
        "resolution_pct": meta.resolution_pct,
        "temperature": meta.temperature,
        **model_stats(engine, model_path),
    }
    report["data"] = {
        "split": split,
        "manifest_hash": getattr(manifest, "hash", None),
        "model_manifest_hash": meta.manifest_hash,
        "n_items": len(pred.items),
        "n_ood": len(ood.items),
        "limit": limit,
        "skipped": pred.skipped + ood.skipped,
    }
    report["robustness"] = None
    if robustness:
        log(f"robustness: {len(corruptions)} corruptions x severities {list(severities)}")
        report["robustness"] = _robustness(
            engine, pred, corruptions, severities, batch_size, report, log
        )
    report["seconds"] = round(time.perf_counter() - started, 2)
    if out_dir is not None:
        write_outputs(report, out_dir, pred.images, pred.items)
    return report


def _robustness(engine, pred, corruptions, severities, batch, report, log):
    from wastenet.evaluate.robustness import run_robustness

    return run_robustness(
        lambda x: predict_images(engine, x, batch),
        pred.images,
        pred.label_sets,
        keys=[str(getattr(it, "sha256", None) or it.path) for it in pred.items],
        corruptions=corruptions,
        severities=severities,
        batch_size=batch,
        clean_accuracy=report["overall"]["set_accuracy"],
        progress=log,
    )


def onnx_parameter_count(path: str | Path) -> int | None:
    """Elements in an ONNX graph's initializers (weights); None without the onnx package."""
    try:
        import onnx
    except ImportError:
        return None
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception:  # a damaged file: the size is still worth reporting
        return None
    return int(sum(int(np.prod(t.dims, dtype=np.int64)) for t in graph.initializer))


def model_stats(engine: Engine, path: str | Path | None = None) -> dict:
    """Parameters and file size, as table 5 reports them."""
    params = getattr(engine, "num_parameters", None)
    if callable(params):
        params = params()
    stats: dict = {"parameters": int(params) if params is not None else None}
    if path is not None and Path(path).exists():
        path = Path(path)
        from wastenet.accelerate.bench import artifact_bytes

        size = artifact_bytes(path)  # an OpenVINO .xml counts its .bin too
        stats.update(path=str(path), file_size_bytes=int(size), file_size_mb=round(size / 1e6, 3))
        if stats["parameters"] is None and path.suffix == ".safetensors":
            stats["parameters"] = safetensors_parameter_count(path)
        elif stats["parameters"] is None and path.suffix == ".onnx":
            stats["parameters"] = onnx_parameter_count(path)
    return stats


def _preview_index(items: Sequence[Any]) -> int:
    """A glass or metal item if any (where glare hurt in the paper), else the first."""
    for want in ("glass", "metal"):
        for i, it in enumerate(items):
            if tuple(it.labels) == (want,):
                return i
    return 0


def write_outputs(report: dict, out_dir: str | Path, images: np.ndarray, items) -> list[Path]:
    """report.json, report.md, confusion_<source>.png and the robustness figures.

    The figures need matplotlib; without it they are skipped (one note on stderr)."""
    from wastenet.evaluate.plots import save_confusion_png
    from wastenet.evaluate.robustness import save_preview_grid, save_robustness_chart

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = [out / "report.json", out / "report.md"]
    record = {**report, "provenance": provenance()}
    (out / "report.json").write_text(json.dumps(record, indent=2, default=_jsonable))
    (out / "report.md").write_text(render_markdown(report))
    for source, group in report["per_source"].items():
        path = out / f"confusion_{_safe(source)}.png"
        acc = 100 * (group["set_accuracy"] or 0.0)
        title = f"{source}: accuracy {acc:.1f} % on {group['n']} items"
        written.append(save_confusion_png(group["confusion"], path, title))
    rob = report.get("robustness")
    if rob:
        written.append(save_robustness_chart(rob, out / "robustness.png"))
        i = _preview_index(items)
        key = str(getattr(items[i], "sha256", None) or items[i].path)
        written.append(save_preview_grid(images[i], out / "robustness_preview.png", key=key))
    return [p for p in written if p is not None]


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _interval(bounds: list[float] | None) -> str:
    return "–" if bounds is None else f"{100 * bounds[0]:.1f}-{100 * bounds[1]:.1f} %"


def render_markdown(report: dict) -> str:
    """The human-readable report: tables a reviewer can paste into a results page."""
    m, d = report["model"], report["data"]
    params = f"{m['parameters']:,}" if m.get("parameters") else "–"
    size = f"{m['file_size_mb']:.1f} MB" if m.get("file_size_mb") is not None else "–"
    lines = [
        f"# Evaluation: {m['architecture']} @ {size_text(m['input_size'])} (HxW)",
        "",
        f"Split `{d['split']}`, {d['n_items']} items, {d['n_ood']} out-of-distribution; "
        f"parameters {params}; file size {size}"
        + (f"; limited to {d['limit']} per source" if d.get("limit") else "")
        + (f"; {len(d['skipped'])} unreadable file(s) skipped" if d["skipped"] else ""),
        "",
        "## Top-1 accuracy per source",
        "",
        "| source | items | top-1 (exact labels) | 95 % interval (Wilson) | set-label accuracy "
        "| paper+cardboard merged |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups = {**report["per_source"], "**all**": report["overall"]}
    for name, g in groups.items():
        lines.append(
            f"| {name} | {g['n']} | {_pct(g['top1'])} | {_interval(g['top1_ci95'])} "
            f"| {_pct(g['set_label_accuracy'])} "
            f"| {_pct(g['coarse_accuracy'])} |"
        )
    lines += [
        "",
        "## Per class (exactly-labelled items)",
        "",
        "| class | precision | recall | F1 | support |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, c in report["overall"]["per_class"].items():
        lines.append(
            f"| {name} | {_pct(c['precision'])} | {_pct(c['recall'])} | {_pct(c['f1'])} "
            f"| {c['support']} |"
        )
    lines += _not_sure_lines(report)
    if report.get("robustness"):
        lines += _robustness_lines(report["robustness"])
    return "\n".join(lines) + "\n"


def _not_sure_lines(report: dict) -> list[str]:
    rule = report.get("not_sure_rule") or f"top probability below {report['threshold']:.2f}"
    lines = [
        "",
        f'## "Not sure": {rule}',
        "",
        "| items | n | not sure | coverage | accuracy when confident |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    groups = {**report["per_source"], "**all in-distribution**": report["overall"]}
    for name, g in groups.items():
        ns = g["not_sure"]
        lines.append(
            f"| {name} | {ns['n']} | {_pct(ns['not_sure_rate'])} | {_pct(ns['coverage'])} "
            f"| {_pct(ns['accuracy_confident'])} |"
        )
    ood = report["ood"]
    if ood["n"]:
        lines.append(
            f"| out-of-distribution | {ood['n']} | {_pct(ood['not_sure_rate'])} "
            f"| {_pct(ood['coverage'])} | – |"
        )
        lines += [
            "",
            f"AUROC of the sureness, in- vs out-of-distribution: {ood['auroc']:.3f}",
        ]
    ece = report["overall"].get("ece")
    if ece is not None:
        temp = report.get("model", {}).get("temperature", 1.0)
        lines += ["", f"Expected calibration error (15 bins): {_pct(ece)} (temperature {temp:.3f})"]
    return lines


def _robustness_lines(rob: dict) -> list[str]:
    sevs = rob["severities"]
    lines = [
        "",
        "## Robustness (TrashNet-C style corruptions)",
        "",
        f"Clean accuracy {_pct(rob['clean_accuracy'])}; mean corruption accuracy "
        f"{_pct(rob['mean_corruption_accuracy'])} "
        f"({_pct(rob['relative_to_clean'])} of clean). {rob['note']}.",
        "",
        "| corruption | " + " | ".join(f"severity {s}" for s in sevs) + " | mean |",
        "| --- |" + " ---: |" * (len(sevs) + 1),
    ]
    for name, row in rob["accuracy"].items():
        cells = " | ".join(_pct(row[str(s)]) for s in sevs)
        lines.append(f"| {name} | {cells} | {_pct(rob['per_corruption_mean'][name])} |")
    return lines
