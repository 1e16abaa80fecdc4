"""Leave-one-source-out before and after: two recipes' ``wastenet shift`` results, fold by
fold, and the domain-shift issue's targets for the recipe after.

For each left-out source: the set-aware top-1 of each recipe (Wilson 95 %), the difference
with a normal 95 % interval, and the "not sure" rate on its out-of-distribution items at
the bar refusing 5 % of the fold's own test items; then the means, and the targets: the
mean up by at least 15 points, no left-out source under 85 %, and "not sure" on at least
60 % of the outliers. The two recipes are scored on the same items, so the difference's
interval, which treats them as independent, is conservative. Used by
``benchmarks/compare_shift.py`` (which writes the result) and by ``wastenet report``
(which shows the shipped recipe's in BENCHMARKS.md). Pure Python: the deploy side.
"""

from __future__ import annotations

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


def all_sources(result: dict) -> list[str]:
    """The sources a LOSO run folds over: each fold's left-out and training sources."""
    return sorted(
        {
            s
            for fold in result["folds"]
            for s in fold.get("left_out", []) + fold.get("train_sources", [])
        }
    )


def compare(before: dict, after: dict) -> dict:
    """Per left-out source and on the mean: top-1 before, after, the difference, and OOD.

    Where some folds are not measured yet (a side assembled from ``--folds`` runs), they
    are listed under ``not_measured``, and a target that the missing folds could still
    change is ``met: None`` (undecided): the mean's gain and the outliers always, the
    floor unless a measured fold is already under it."""
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

    def mean_ood(key: str) -> float | None:
        oods = [r[key] for r in rows if r["ood_n"]]
        return None if None in oods or not oods else sum(oods) / len(oods)

    ood_after = mean_ood("ood_not_sure_after")
    lowest = min(rows, key=lambda r: r["after"]["top1"])
    missing = [s for s in all_sources(before) if s not in old]
    floor_met = lowest["after"]["top1"] >= FLOOR
    # the gain each fold not measured must make for the mean over every fold to reach the
    # target; a top-1 gains at most 1 (from 0 to 100 %), so more than that decides it
    needed = (MEAN_GAIN * (k + len(missing)) - k * mean_diff) / len(missing) if missing else None

    def decided(met: bool, missing_can_change: bool = True) -> bool | None:
        return None if missing and missing_can_change else met

    return {
        "rows": rows,
        "not_measured": missing,
        "mean": {
            "before": sum(r["before"]["top1"] for r in rows) / k,
            "after": sum(r["after"]["top1"] for r in rows) / k,
            "difference": mean_diff,
            "difference_ci95": _interval(mean_diff, mean_se),
            "ood_not_sure_before": mean_ood("ood_not_sure_before"),
            "ood_not_sure_after": ood_after,
        },
        "targets": {
            "mean_gain": {
                "target": MEAN_GAIN,
                "measured": mean_diff,
                "met": False
                if needed is not None and needed > 1
                else decided(mean_diff >= MEAN_GAIN),
                "needed_from_each_missing_fold": needed,
            },
            "floor": {
                "target": FLOOR,
                "measured": lowest["after"]["top1"],
                "source": lowest["source"],
                "met": decided(floor_met, missing_can_change=floor_met),
            },
            "ood_not_sure": {
                "target": OOD_NOT_SURE,
                "measured": ood_after,
                "met": decided(ood_after is not None and ood_after >= OOD_NOT_SURE),
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
        f"| {_points(m['difference'], m['difference_ci95'])} "
        f"| {_pct(m.get('ood_not_sure_before'))} -> {_pct(m['ood_not_sure_after'])} |"
    )
    t = cmp["targets"]
    missing = cmp.get("not_measured") or []
    met = {True: "met", False: "not met", None: "undecided until every fold is measured"}
    lines.append("")
    if missing:
        k = len(cmp["rows"])
        lines.append(
            f"- Folds measured: {k} of {k + len(missing)}; not yet: {', '.join(missing)}. "
            "The mean is over the measured folds only; for the target, each fold not measured "
            f"would need to gain {100 * t['mean_gain']['needed_from_each_missing_fold']:+.1f} points."
        )
    lines += [
        f"- Mean up by at least {100 * MEAN_GAIN:.0f} points: {100 * t['mean_gain']['measured']:+.1f}"
        f" ({met[t['mean_gain']['met']]}).",
        f"- No left-out source under {100 * FLOOR:.0f} %: lowest {t['floor']['source']} "
        f"{_pct(t['floor']['measured'])} ({met[t['floor']['met']]}).",
        f'- Outliers "not sure" at least {100 * OOD_NOT_SURE:.0f} % at 5 % refusals: '
        f"{_pct(t['ood_not_sure']['measured'])} ({met[t['ood_not_sure']['met']]}).",
    ]
    return "\n".join(lines)
