"""Leave-one-source-out before and after: two `wastenet shift` results, fold by fold.

Run: python benchmarks/compare_shift.py --before A.json [B.json ...] --after C.json [...] --name NAME
Each side is one recipe's shift.json, or several holding its folds (a long run made a fold
at a time with `wastenet shift --folds`); both sides must score the same items (the same
manifest and left-out sources). For
each left-out source: the set-aware top-1 of each recipe (Wilson 95 %), the difference
with a normal 95 % interval, and the "not sure" rate on its out-of-distribution items at
the bar refusing 5 % of the fold's own test items; then the means, and the issue's
targets for the recipe after: the mean up by at least 15 points, no left-out source
under 85 %, and "not sure" on at least 60 % of the outliers. The two recipes are scored
on the same items, so the difference's interval, which treats them as independent, is
conservative. Writes results/compare_shift_NAME.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"
Z95 = 1.959964
MEAN_GAIN = 0.15  # the targets for the recipe after
FLOOR = 0.85
OOD_NOT_SURE = 0.60


class Mismatch(ValueError):
    """The two results do not score the same items."""


def left_out_scores(result: dict) -> dict[str, dict]:
    """``{source: scores}`` of the sources each fold left out (holdout-only ones apart)."""
    return {
        name: s
        for fold in result["folds"]
        for name, s in (fold.get("scored") or {}).items()
        if s["role"] == "left_out"
    }


def merge(results: list[dict]) -> dict:
    """One recipe's folds from several results (each made with ``--folds``)."""
    first = results[0]
    for other in results[1:]:
        for key in ("manifest_hash", "recipes", "resolution_pct", "overrides"):
            if other.get(key) != first.get(key):
                raise Mismatch(f"the results of one side differ in {key}")
    folds = [fold for result in results for fold in result["folds"]]
    names = [fold["name"] for fold in folds]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise Mismatch(f"fold {', '.join(twice)} appears in two results of one side")
    return dict(first, folds=folds)


def _se(p: float, n: int) -> float:
    return (p * (1 - p) / n) ** 0.5


def _interval(value: float, se: float) -> list[float]:
    return [value - Z95 * se, value + Z95 * se]


def compare(before: dict, after: dict) -> dict:
    """Per left-out source and on the mean: top-1 before, after, the difference, and OOD."""
    if before.get("manifest_hash") != after.get("manifest_hash"):
        raise Mismatch("the two results come from different manifests")
    old, new = left_out_scores(before), left_out_scores(after)
    if sorted(old) != sorted(new):
        raise Mismatch(f"left-out sources differ: {sorted(old)} against {sorted(new)}")
    rows = []
    for source in sorted(old):
        a, b = old[source], new[source]
        if a["n"] != b["n"]:
            raise Mismatch(f"{source}: {a['n']} items against {b['n']}")
        diff = b["top1_set"] - a["top1_set"]
        se = (_se(a["top1_set"], a["n"]) ** 2 + _se(b["top1_set"], b["n"]) ** 2) ** 0.5
        rows.append(
            {
                "source": source,
                "n": a["n"],
                "before": {"top1": a["top1_set"], "ci95": a["top1_set_ci95"]},
                "after": {"top1": b["top1_set"], "ci95": b["top1_set_ci95"]},
                "difference": diff,
                "difference_ci95": _interval(diff, se),
                "difference_se": se,
                "ood_n": a["ood"]["n"],
                "ood_not_sure_before": a["ood"].get("not_sure_at_refusals"),
                "ood_not_sure_after": b["ood"].get("not_sure_at_refusals"),
            }
        )
    k = len(rows)
    mean_diff = sum(r["difference"] for r in rows) / k
    mean_se = sum(r["difference_se"] ** 2 for r in rows) ** 0.5 / k
    oods = [r["ood_not_sure_after"] for r in rows if r["ood_n"]]
    ood_after = None if None in oods or not oods else sum(oods) / len(oods)
    lowest = min(rows, key=lambda r: r["after"]["top1"])
    return {
        "rows": rows,
        "mean": {
            "before": sum(r["before"]["top1"] for r in rows) / k,
            "after": sum(r["after"]["top1"] for r in rows) / k,
            "difference": mean_diff,
            "difference_ci95": _interval(mean_diff, mean_se),
            "ood_not_sure_after": ood_after,
        },
        "targets": {
            "mean_gain": {
                "target": MEAN_GAIN,
                "measured": mean_diff,
                "met": mean_diff >= MEAN_GAIN,
            },
            "floor": {
                "target": FLOOR,
                "measured": lowest["after"]["top1"],
                "source": lowest["source"],
                "met": lowest["after"]["top1"] >= FLOOR,
            },
            "ood_not_sure": {
                "target": OOD_NOT_SURE,
                "measured": ood_after,
                "met": ood_after is not None and ood_after >= OOD_NOT_SURE,
            },
        },
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _ci(ci: list[float]) -> str:
    return f"({100 * ci[0]:.1f}-{100 * ci[1]:.1f})"


def _points(x: float, ci: list[float]) -> str:
    return f"{100 * x:+.1f} ({100 * ci[0]:+.1f} to {100 * ci[1]:+.1f})"


def markdown(cmp: dict) -> str:
    lines = [
        "| left out | n | before (95 % CI) | after (95 % CI) | difference, points (95 % CI) "
        "| OOD not sure at 5 % refusals, before -> after (n) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in cmp["rows"]:
        ood = (
            f"{_pct(r['ood_not_sure_before'])} -> {_pct(r['ood_not_sure_after'])} ({r['ood_n']})"
            if r["ood_n"]
            else "– (0)"
        )
        lines.append(
            f"| {r['source']} | {r['n']} | {_pct(r['before']['top1'])} {_ci(r['before']['ci95'])} "
            f"| {_pct(r['after']['top1'])} {_ci(r['after']['ci95'])} "
            f"| {_points(r['difference'], r['difference_ci95'])} | {ood} |"
        )
    m = cmp["mean"]
    lines.append(
        f"| **mean** | | {_pct(m['before'])} | {_pct(m['after'])} "
        f"| {_points(m['difference'], m['difference_ci95'])} | {_pct(m['ood_not_sure_after'])} |"
    )
    t = cmp["targets"]
    met = {True: "met", False: "not met"}
    lines += [
        "",
        f"- Mean up by at least {100 * MEAN_GAIN:.0f} points: {100 * t['mean_gain']['measured']:+.1f}"
        f" ({met[t['mean_gain']['met']]}).",
        f"- No left-out source under {100 * FLOOR:.0f} %: lowest {t['floor']['source']} "
        f"{_pct(t['floor']['measured'])} ({met[t['floor']['met']]}).",
        f'- Outliers "not sure" at least {100 * OOD_NOT_SURE:.0f} % at 5 % refusals: '
        f"{_pct(t['ood_not_sure']['measured'])} ({met[t['ood_not_sure']['met']]}).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, nargs="+", required=True, help="shift.json(s)")
    parser.add_argument("--after", type=Path, nargs="+", required=True, help="shift.json(s)")
    parser.add_argument("--name", required=True, help="results/compare_shift_NAME.json")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    try:
        before, after = (
            merge([json.loads(p.read_text()) for p in paths]) for paths in (args.before, args.after)
        )
        cmp = compare(before, after)
    except (OSError, ValueError, KeyError) as exc:
        print(f"compare_shift: {exc}", file=sys.stderr)
        return 2
    described = {
        key: {
            "results": [str(p) for p in paths],
            "recipes": res.get("recipes"),
            "resolution_pct": res.get("resolution_pct"),
        }
        for key, paths, res in (("before", args.before, before), ("after", args.after, after))
    }
    out = {"provenance": provenance(), **described, **cmp}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compare_shift_{args.name}.json"
    path.write_text(json.dumps(out, indent=2))
    print(markdown(cmp))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
