"""Review what the bin kept: label its stored samples, see how it did, and export them as
a data source (the first steps of SPEC's improvement loop; ``wastenet samples``).

A bin run with ``--store DIR`` keeps frames and predictions (``wastenet.runtime.store``).
Labelled photos from the bin's own place are what lifts its real-world accuracy (the
new-place curve in the model README), so the loop is:

1. ``wastenet samples sheet DIR`` writes ``DIR/review/labels.csv`` (one row per sample:
   its image, the bin's answer and sureness, and a ``label`` column, pre-filled where a
   label is stored) and ``DIR/review/index.html`` (every image with its row's id and
   the bin's answer, to read beside the sheet).
2. Fill in ``label``: a class, ``ood`` (not something the bin sorts: it should have
   said "not sure"), ``ignore`` (no item, unclear: leave it out), or nothing (not
   reviewed). ``wastenet samples label DIR labels.csv`` stores the labels in the
   store's database: every row or none, a bad row named with its line.
3. ``wastenet samples summary DIR``: how many are labelled, and the bin's own accuracy
   on them (Wilson 95 %), per model version.
4. ``wastenet samples export DIR --out NEW``: the labelled images in ``NEW/<label>/``
   and ``NEW/source.yaml``, a source for ``wastenet data split`` (its near-duplicate
   grouping keeps the frames of one item in one split).
5. ``wastenet samples export DIR --self-label 0.9 --out NEW``: self-training, no labels
   needed. The samples nobody reviewed that the bin was at least 0.9 sure of, in the
   folder of its own answer, as a train-only source (``train_only: true``: trained on,
   never scored).

The store takes its lock (one process at a time), so review a copy of a running bin's
store, or the store of a stopped one. Pure stdlib, numpy and OpenCV: the deploy side.
"""

from __future__ import annotations

import contextlib
import csv
import html
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import yaml

from wastenet.classes import CLASSES, IGNORE, NOT_SURE, OOD
from wastenet.errors import WasteNetError
from wastenet.evaluate.metrics import wilson_interval
from wastenet.runtime.store import SampleStore

LABELS = (*CLASSES, OOD, IGNORE)
SHEET_COLUMNS = (
    "id",
    "image",
    "time",
    "prediction",
    "sureness",
    "vote",
    "model_version",
    "label",
)
EXPORT_MARK = "# Made by `wastenet samples export`"
LISTED_ERRORS = 10  # bad sheet rows named in the error
SELF_LABEL_SURENESS = 0.9  # the measured one: +8 points on a new place (model README)


@contextlib.contextmanager
def open_store(folder: str | Path) -> Iterator[SampleStore]:
    """The sample store in ``folder``, closed on leaving; a folder without one is refused
    (never created)."""
    root = Path(folder).expanduser()
    if not (root / "samples.sqlite").is_file():
        raise WasteNetError(
            f"{folder}: no sample store here (no samples.sqlite); give the folder that "
            "`wastenet run --store` wrote"
        )
    store = SampleStore(root)
    try:
        yield store
    finally:
        store.close()


def parse_label(text: str) -> str | None:
    """A sheet's label cell: a class, ood or ignore (any case), or empty (None)."""
    value = text.strip().lower()
    if not value:
        return None
    if value not in LABELS:
        raise ValueError(
            f"{text.strip()!r} is not a label (use {', '.join(LABELS)}, or leave it empty)"
        )
    return value


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def write_sheet(store: SampleStore, out: Path, unreviewed: bool = False, force: bool = False):
    """``out/labels.csv`` and ``out/index.html`` for the samples (only the unlabelled ones
    with ``unreviewed``). An existing sheet may hold a person's work: kept unless ``force``."""
    sheet, page = out / "labels.csv", out / "index.html"
    if sheet.exists() and not force:
        raise WasteNetError(
            f"{sheet} exists and may hold labels not stored yet: store them with "
            f"`wastenet samples label {store.root} {sheet}`, or pass --force to write a new one"
        )
    rows = [r for r in store.rows() if not (unreviewed and r["label"])]
    out.mkdir(parents=True, exist_ok=True)
    with open(sheet, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SHEET_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    r["id"],
                    r["image_path"],
                    _when(r["ts"]),
                    r["prediction"],
                    f"{r['confidence']:.3f}",
                    r["vote"] or "",
                    r["model_version"] or "",
                    r["label"] or "",
                ]
            )
    page.write_text(_contact_sheet(store, rows, page.parent), encoding="utf-8")
    return sheet, page, len(rows)


def _contact_sheet(store: SampleStore, rows: list[dict], where: Path) -> str:
    cells = []
    for r in rows:
        src = Path(os.path.relpath(store.images / r["image_path"], where)).as_posix()
        caption = f"{r['id']}: {r['prediction']} {r['confidence']:.2f}"
        if r["label"]:
            caption += f" (labelled {r['label']})"
        cells.append(
            f'<figure id="s{r["id"]}"><img src="{html.escape(src)}" loading="lazy" '
            f'alt="sample {r["id"]}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        )
    return (
        '<!doctype html>\n<html><head><meta charset="utf-8"><title>Samples to label</title>'
        "<style>body{font-family:sans-serif}main{display:flex;flex-wrap:wrap;gap:8px}"
        "figure{margin:0;width:224px}img{width:224px}figcaption{font-size:13px}</style>"
        "</head><body>\n"
        f"<p>{len(rows)} samples of {html.escape(str(store.root))}: the id (labels.csv's "
        "first column), the bin's answer and its sureness. Label each row of labels.csv "
        f"with one of {html.escape(', '.join(LABELS))}.</p>\n<main>\n"
        + "\n".join(cells)
        + "\n</main></body></html>\n"
    )


def read_sheet(path: str | Path) -> dict[str, str | None]:
    """``{image: label or None}`` from a filled-in sheet; every bad row named, with its line."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except UnicodeDecodeError as exc:
        raise WasteNetError(f"{path}: not a UTF-8 text sheet ({exc.reason})") from exc
    except OSError as exc:
        raise WasteNetError(f"{path}: cannot read the sheet ({exc.strerror or exc})") from exc
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    missing = [c for c in ("image", "label") if c not in (reader.fieldnames or [])]
    if missing:
        raise WasteNetError(
            f"{path}: no {' or '.join(missing)} column; write a sheet with `wastenet samples sheet`"
        )
    labels, errors = {}, []
    for line, row in enumerate(reader, start=2):
        image = (row["image"] or "").strip()
        try:
            if not image:
                raise ValueError("no image name")
            if image in labels:
                raise ValueError(f"{image} appears twice")
            labels[image] = parse_label(row["label"] or "")
        except ValueError as exc:
            errors.append(f"line {line}: {exc}")
    if errors:
        more = len(errors) - LISTED_ERRORS
        raise WasteNetError(
            f"{path}: nothing stored, {len(errors)} bad row{'s' * (len(errors) > 1)}: "
            + "; ".join(errors[:LISTED_ERRORS])
            + (f"; ... and {more} more" if more > 0 else "")
        )
    return labels


def summarise(rows: list[dict]) -> dict:
    """Counts of labels, and per model version the bin's answers on the labelled samples:
    right, wrong and "not sure" on the classes, "not sure" on the outliers."""
    counts = Counter(r["label"] or "not reviewed" for r in rows)
    by_version: dict[str, dict] = defaultdict(
        lambda: {"n": 0, "right": 0, "not_sure": 0, "ood_n": 0, "ood_not_sure": 0}
    )
    for r in rows:
        v = by_version[r["model_version"] or "unknown"]
        if r["label"] in CLASSES:
            v["n"] += 1
            v["right"] += r["prediction"] == r["label"]
            v["not_sure"] += r["prediction"] == NOT_SURE
        elif r["label"] == OOD:
            v["ood_n"] += 1
            v["ood_not_sure"] += r["prediction"] == NOT_SURE
    for v in by_version.values():
        v["right_ci95"] = wilson_interval(v["right"], v["n"])
    versions = {k: v for k, v in by_version.items() if v["n"] or v["ood_n"]}
    return {
        "samples": len(rows),
        "labels": dict(counts),
        "by_model_version": versions,
        "self_label_candidates": len(self_labelled(rows, SELF_LABEL_SURENESS)),
    }


def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f} %" if n else "–"


def summary_text(root: Path, s: dict) -> str:
    labels = s["labels"]
    shown = [f"{name} {labels[name]}" for name in (*LABELS, "not reviewed") if labels.get(name)]
    lines = [f"{root}: {s['samples']} samples; {', '.join(shown) or 'none labelled'}"]
    for version, v in s["by_model_version"].items():
        ci = v["right_ci95"]
        interval = f", 95 % CI {100 * ci[0]:.1f}-{100 * ci[1]:.1f}" if ci else ""
        lines.append(
            f"model {version}: right on {v['right']} of {v['n']} labelled items "
            f'({_pct(v["right"], v["n"])}{interval}), "not sure" on {v["not_sure"]}; '
            f'"not sure" on {v["ood_not_sure"]} of {v["ood_n"]} outliers '
            f"({_pct(v['ood_not_sure'], v['ood_n'])})"
        )
    if not s["by_model_version"]:
        lines.append("nothing labelled yet: `wastenet samples sheet` writes a sheet to fill in")
    if s["self_label_candidates"]:
        lines.append(
            f"{s['self_label_candidates']} samples nobody reviewed that the bin was at least "
            f"{SELF_LABEL_SURENESS:g} sure of: `wastenet samples export {root} --self-label "
            f"{SELF_LABEL_SURENESS:g} --out DIR` makes them a train-only source (self-training)"
        )
    return "\n".join(lines)


def _earlier_export(out: Path) -> bool:
    """Whether ``out`` holds only what an earlier export wrote (so it may be replaced)."""
    marker = out / "source.yaml"
    if not marker.is_file() or not marker.read_text(encoding="utf-8").startswith(EXPORT_MARK):
        return False
    allowed = {"source.yaml", *CLASSES, OOD}
    return all(p.name in allowed for p in out.iterdir())


def check_self_label(sureness: float) -> float:
    if not 0.0 < sureness <= 1.0:
        raise WasteNetError(f"--self-label {sureness:g}: give a sureness in (0, 1], e.g. 0.9")
    return sureness


def self_labelled(rows: list[dict], sureness: float) -> list[dict]:
    """The samples nobody reviewed that the bin was at least ``sureness`` sure of, each
    labelled with the bin's own answer (self-training's labels)."""
    return [
        {**r, "label": r["prediction"]}
        for r in rows
        if r["label"] is None and r["prediction"] in CLASSES and r["confidence"] >= sureness
    ]


def _what_to_export(store: SampleStore, self_label: float | None) -> tuple[list, str, str, dict]:
    """The rows to export, the source.yaml's comment, the default name's suffix after
    ``bin-STORE``, and the source's keys."""
    if self_label is None:
        rows = [r for r in store.rows() if r["label"] in (*CLASSES, OOD)]
        if not rows:
            raise WasteNetError(
                f"{store.root}: no sample labelled with a class or {OOD}, nothing to export; "
                "label some first (`wastenet samples sheet`, then `wastenet samples label`)"
            )
        about = "its samples labelled by review,\n# a class folder each; ood: items the bin should not sort."
        return rows, about, "", {"folders": {OOD: OOD}}
    rows = self_labelled(store.rows(), check_self_label(self_label))
    if not rows:
        raise WasteNetError(
            f"{store.root}: no unreviewed sample the bin was at least {self_label:g} sure of, "
            "nothing to export (the bin's default --store-policy uncertain keeps only the "
            "frames it was unsure of: run it with --store-policy uncertain+every:K to "
            "self-train too)"
        )
    about = (
        f"the samples nobody reviewed\n# that the bin was at least {self_label:g} sure of, "
        "labelled with its own answers:\n# a train-only source (trained on, never scored)."
    )
    return rows, about, "-self-labelled", {"train_only": True}


def export(
    store: SampleStore, out: str | Path, name: str | None = None, self_label: float | None = None
) -> dict[str, int]:
    """The samples labelled with a class or ``ood`` as a folder source in ``out``; with
    ``self_label``, instead the unreviewed samples the bin was that sure of, labelled with
    its answers, as a train-only source (``wastenet.data.sources``: a model's labels are
    trained on, never scored).

    ``out`` must be new, empty, or an earlier export (replaced whole: the new one is made
    beside it and swapped in). Returns the number of images per label."""
    out = Path(out).expanduser()
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or _earlier_export(out))):
        raise WasteNetError(
            f"{out}: exists and is not an earlier `wastenet samples export`; give a new folder"
        )
    store_name = store.root.resolve().name
    rows, about, suffix, keys = _what_to_export(store, self_label)
    source = {"name": name or f"bin-{store_name}{suffix}", "root": ".", **keys}
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    counts: Counter = Counter()
    try:
        for r in rows:
            folder = partial / r["label"]
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy2(store.images / r["image_path"], folder / r["image_path"])
            counts[r["label"]] += 1
        partial.mkdir(parents=True, exist_ok=True)
        (partial / "source.yaml").write_text(
            f"{EXPORT_MARK} from the sample store {store_name}: {about}\n"
            + yaml.safe_dump(source, sort_keys=False),
            encoding="utf-8",
        )
        if out.exists():
            old = out.with_name(out.name + ".old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            partial.rename(out)
            shutil.rmtree(old)
        else:
            partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return dict(counts)
