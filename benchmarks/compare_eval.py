"""Side by side: several `wastenet evaluate` reports (the paper's figure-12 comparison).

Run: python benchmarks/compare_eval.py NAME=runs/a/eval/report.json NAME=runs/b/eval/report.json
Prints a Markdown table of per-source top-1, set-aware accuracy and the robustness
suite (mean per corruption over the severities run) and writes results/compare_eval.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "compare_eval.json"


def rows(reports: dict[str, dict]) -> list[tuple[str, list[str]]]:
    first = next(iter(reports.values()))
    out = []
    for source in first["per_source"]:
        out.append(
            (
                f"{source} top-1",
                [f"{r['per_source'][source]['top1']:.1%}" for r in reports.values()],
            )
        )
        out.append(
            (
                f"{source} set-aware",
                [f"{r['per_source'][source]['set_accuracy']:.1%}" for r in reports.values()],
            )
        )
    for name in first["robustness"]["per_corruption_mean"]:
        out.append(
            (
                f"robustness: {name}",
                [f"{r['robustness']['per_corruption_mean'][name]:.1%}" for r in reports.values()],
            )
        )
    out.append(
        (
            "robustness: mean corruption accuracy",
            [f"{r['robustness']['mean_corruption_accuracy']:.1%}" for r in reports.values()],
        )
    )
    return out


def main(args: list[str]) -> None:
    reports = {}
    for arg in args:
        name, _, path = arg.partition("=")
        reports[name] = json.loads(Path(path).read_text())
    table = rows(reports)
    print("| metric | " + " | ".join(reports) + " |")
    print("| --- | " + " | ".join("---:" for _ in reports) + " |")
    for metric, values in table:
        print(f"| {metric} | " + " | ".join(values) + " |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "reports": dict(zip(reports, args, strict=True)),
                "rows": table,
                "provenance": provenance(),
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
