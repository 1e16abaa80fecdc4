"""``evaluate_model``: one predictor, one manifest -> report.json, report.md and figures.

Used by ``wastenet evaluate`` and by the training stage at the end of a run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wastenet.classes import CLASSES, CONFIDENCE_THRESHOLD
from wastenet.errors import WasteNetError
from wastenet.evaluate.corruptions import CORRUPTIONS
from wastenet.evaluate.dataset import limit_items, load_images
from wastenet.evaluate.predictor import Predictor, model_stats, predict_images
from wastenet.evaluate.scoring import score_predictions

REPORT_SECTIONS = ("model", "data", "overall", "per_source", "ood", "robustness")


def _check_labels(predictor: Predictor) -> None:
    labels = list(predictor.meta.labels)
    if labels != list(CLASSES):
        raise WasteNetError(
            f"the model's labels {labels} are not WasteNet's classes {list(CLASSES)} in order"
        )


def evaluate_model(
    predictor: Predictor,
    manifest: Any,
    split: str = "test",
    threshold: float = CONFIDENCE_THRESHOLD,
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
    """Score ``predictor`` on ``manifest``'s ``split`` (+ its OOD items); optionally write files.

    ``manifest`` needs ``items(split=...)`` and ``ood`` (the data stage's Manifest).
    ``limit`` caps the items per source (a quick look, not a result to quote).
    """
    log = log or (lambda _msg: None)
    _check_labels(predictor)
    if not 0.0 <= threshold <= 1.0:
        raise WasteNetError(f"threshold must be between 0 and 1, got {threshold}")
    size = (predictor.meta.height, predictor.meta.width)
    items = limit_items(manifest.items(split=split), limit)
    if not items:
        raise WasteNetError(f"the manifest has no {split!r} items to evaluate")
    started = time.perf_counter()
    log(f"loading {len(items)} {split} images at {size[1]}x{size[0]}")
    images, items, skipped = load_images(items, size, cache_dir)
    if not items:
        raise WasteNetError(f"none of the {split!r} images could be read")
    label_sets = [tuple(it.labels) for it in items]
    probs = predict_images(predictor, images, batch_size)
    ood_items = limit_items(list(getattr(manifest, "ood", []) or []), limit)
    ood_images, ood_items, ood_skipped = load_images(ood_items, size, cache_dir)
    ood_probs = predict_images(predictor, ood_images, batch_size) if len(ood_items) else None
    report: dict = score_predictions(
        probs, label_sets, [it.source for it in items], threshold, ood_probs
    )
    report["model"] = {
        "architecture": predictor.meta.architecture,
        "input_size": list(predictor.meta.input_size),
        "resolution_pct": predictor.meta.resolution_pct,
        "temperature": predictor.meta.temperature,
        **model_stats(predictor, model_path),
    }
    report["data"] = {
        "split": split,
        "manifest_hash": getattr(manifest, "hash", None),
        "model_manifest_hash": predictor.meta.manifest_hash,
        "n_items": len(items),
        "n_ood": len(ood_items),
        "limit": limit,
        "skipped": skipped + ood_skipped,
    }
    report["robustness"] = None
    if robustness:
        log(f"robustness: {len(corruptions)} corruptions x severities {list(severities)}")
        report["robustness"] = _robustness(
            predictor, images, label_sets, items, corruptions, severities, batch_size, report, log
        )
    report["seconds"] = round(time.perf_counter() - started, 2)
    if out_dir is not None:
        write_outputs(report, out_dir, images, items)
    return report


def _robustness(predictor, images, label_sets, items, corruptions, severities, batch, report, log):
    from wastenet.evaluate.robustness import run_robustness

    return run_robustness(
        lambda x: predict_images(predictor, x, batch),
        images,
        label_sets,
        keys=[str(getattr(it, "sha256", None) or it.path) for it in items],
        corruptions=corruptions,
        severities=severities,
        batch_size=batch,
        clean_accuracy=report["overall"]["set_accuracy"],
        progress=log,
    )


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
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
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
        f"# Evaluation: {m['architecture']} @ {m['input_size'][1]}x{m['input_size'][0]}",
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
    t = report["threshold"]
    lines = [
        "",
        f'## "Not sure" below {t:.2f} top probability',
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
            f"AUROC of the top probability, in- vs out-of-distribution: "
            f"{ood['auroc_max_prob']:.3f}",
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
