"""The paper's real-world protocol (section 4.3.1, tables 6-7, figures 10 and 13).

Items are shown to the bin one by one and the outcome written down in a CSV with
columns ``item,true,predicted,error``: ``error`` names an identified cause of a wrong
answer (glare, zoom, lighting, ...) or is empty. Table 6 reports

- accuracy *including errors*: correct / all items (what the bin really did), and
- accuracy *excluding errors*: (correct + wrong with an identified cause) / all items,
  "the maximum theoretical accuracy if these perturbations were resolved" (82.5 % ->
  90 % on 40 items: 33 right, 3 more wrong for a known cause).

Also reported: accuracy on the items without an identified cause only.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from wastenet.classes import CLASSES, NOT_SURE
from wastenet.errors import WasteNetError
from wastenet.provenance import provenance

COLUMNS = ("item", "true", "predicted", "error")
_NOT_SURE_NAMES = {NOT_SURE, "not_sure", "other", "unknown", ""}


@dataclass(frozen=True)
class Outcome:
    item: str
    true: str
    predicted: str  # a class or "not sure"
    error: str = ""  # identified cause of a wrong answer, empty when none

    @property
    def correct(self) -> bool:
        return self.predicted == self.true


def read_outcomes(path: str | Path) -> list[Outcome]:
    """Parse and validate the outcomes CSV; any bad row is a WasteNetError naming its line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise WasteNetError(f"{path}: no such outcomes CSV") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WasteNetError(f"{path}: cannot read outcomes CSV ({exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in COLUMNS[:3] if c not in header]
    if missing:
        raise WasteNetError(
            f"{path}: outcomes CSV lacks column(s) {', '.join(missing)}; "
            f"expected a header {','.join(COLUMNS)}"
        )
    outcomes = []
    for line, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        true, pred = row["true"].lower(), row["predicted"].lower()
        if true not in CLASSES:
            raise WasteNetError(f"{path}:{line}: unknown true class {row['true']!r}")
        if pred in _NOT_SURE_NAMES:
            pred = NOT_SURE
        elif pred not in CLASSES:
            raise WasteNetError(f"{path}:{line}: unknown predicted class {row['predicted']!r}")
        outcomes.append(Outcome(row["item"], true, pred, row.get("error", "")))
    if not outcomes:
        raise WasteNetError(f"{path}: outcomes CSV has no rows")
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict:
    """Table 6 numbers, per-category counts (figures 10/13) and the error causes."""
    n = len(outcomes)
    correct = sum(o.correct for o in outcomes)
    excused = sum((not o.correct) and bool(o.error) for o in outcomes)
    clean = [o for o in outcomes if o.correct or not o.error]
    per_category = {}
    for name in CLASSES:
        rows = [o for o in outcomes if o.true == name]
        if not rows:
            continue
        ok = sum(o.correct for o in rows)
        per_category[name] = {
            "total": len(rows),
            "correct": ok,
            "correct_excluding_errors": ok + sum((not o.correct) and bool(o.error) for o in rows),
            "accuracy": ok / len(rows),
            "predicted_as": dict(Counter(o.predicted for o in rows if not o.correct)),
        }
    return {
        "n": n,
        "correct": correct,
        "accuracy_including_errors": correct / n,
        "accuracy_excluding_errors": (correct + excused) / n,
        "accuracy_on_items_without_errors": (
            sum(o.correct for o in clean) / len(clean) if clean else None
        ),
        "not_sure": sum(o.predicted == NOT_SURE for o in outcomes),
        "errors_by_cause": dict(Counter(o.error for o in outcomes if o.error and not o.correct)),
        "per_category": per_category,
    }


def render_markdown(summary: dict, title: str = "Real-world test") -> str:
    lines = [
        f"# {title}",
        "",
        "| items | accuracy including errors | accuracy excluding errors |",
        "| ---: | ---: | ---: |",
        f"| {summary['n']} | {100 * summary['accuracy_including_errors']:.1f} % "
        f"| {100 * summary['accuracy_excluding_errors']:.1f} % |",
        "",
        "| category | items | correct | correct excl. errors | accuracy |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, c in summary["per_category"].items():
        lines.append(
            f"| {name} | {c['total']} | {c['correct']} | {c['correct_excluding_errors']} "
            f"| {100 * c['accuracy']:.1f} % |"
        )
    if summary["errors_by_cause"]:
        lines += [
            "",
            "Wrong answers by identified cause: "
            + ", ".join(f"{k} {v}" for k, v in summary["errors_by_cause"].items()),
        ]
    return "\n".join(lines) + "\n"


def evaluate_realworld(csv_path: str | Path, out_dir: str | Path) -> dict:
    """Read the CSV, write realworld.json, realworld.md and realworld.png into out_dir
    (the figure only where matplotlib is installed)."""
    import json

    from wastenet.evaluate.plots import save_category_bars

    summary = summarize(read_outcomes(csv_path))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {**summary, "provenance": provenance()}
    (out / "realworld.json").write_text(json.dumps(record, indent=2))
    (out / "realworld.md").write_text(render_markdown(summary))
    save_category_bars(
        summary["per_category"], out / "realworld.png", "Real-world test per category"
    )
    return summary
