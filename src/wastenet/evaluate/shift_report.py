"""Numbers and tables of a domain-shift (leave-one-source-out) run; numpy only.

Kept apart from ``shift.py`` (which trains and predicts) so the arithmetic is testable
on plain arrays and a finished ``shift.json`` can be re-rendered without torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wastenet.classes import CLASSES
from wastenet.evaluate import metrics as M
from wastenet.evaluate.scoring import score_group, score_ood
from wastenet.sureness import DEFAULT_REFUSALS, NotSureRule


def source_scores(
    probs: np.ndarray,
    label_sets: Sequence[tuple[str, ...]],
    threshold: NotSureRule | float,
    ood_probs: np.ndarray | None = None,
    refusal_bar: float | None = None,
) -> dict:
    """One unseen source: evaluate's score_group plus the set-aware top-1 with its interval.

    The model still chooses among all classes (as in the bin); ``classes`` lists the ones
    the source has, the only ones whose recall means anything for it. ``refusal_bar``
    (the rule's bar that refuses 5 % of the training sources' test items) adds the OOD
    items' "not sure" rate at that bar (``ood.not_sure_at_refusals``).
    """
    probs = np.asarray(probs, np.float64)
    label_sets = [tuple(ls) for ls in label_sets]
    group = score_group(probs, label_sets, threshold)
    scored = M.score(probs, label_sets)
    present = [c for c in CLASSES if any(c in ls for ls in label_sets)]
    group.update(
        top1_set=scored.accuracy,
        top1_set_right=scored.right,
        top1_set_ci95=M.wilson_interval(scored.right, scored.n),
        classes=present,
        recall={
            c: group["per_class"][c]["recall"]
            for c in present
            if group["per_class"][c]["support"] > 0
        },
        ood=score_ood(probs, ood_probs, threshold, refusal_bar),
    )
    return group


def seen_test_scores(
    probs: np.ndarray, label_sets: Sequence[tuple[str, ...]], threshold: NotSureRule | float
) -> dict:
    """The training sources' own test items: how often the model refuses what it knows."""
    probs = np.asarray(probs, np.float64)
    scored = M.score(probs, [tuple(ls) for ls in label_sets])
    stats = M.threshold_stats(probs, scored.hits, threshold)
    stats["top1_set"] = scored.accuracy
    return stats


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def mean_interval(scores: Sequence[dict], z: float = 1.959964) -> list[float] | None:
    """Normal 95 % interval of the unweighted mean of independent sources' top-1: the
    item-sampling noise only (a training seed adds its own, not measured here)."""
    parts = [(s["top1_set"], s["n"]) for s in scores if s.get("n") and s["top1_set"] is not None]
    if not parts:
        return None
    mean = sum(p for p, _ in parts) / len(parts)
    se = (sum(p * (1 - p) / n for p, n in parts) ** 0.5) / len(parts)
    return [max(0.0, mean - z * se), min(1.0, mean + z * se)]


def mean_block(scores: Sequence[dict]) -> dict:
    """Unweighted mean over sources (each source one vote) and the pooled top-1."""
    n = sum(s["n"] for s in scores)
    right = sum(s["top1_set_right"] for s in scores)
    return {
        "n_scores": len(scores),
        "n_items": n,
        "mean_top1_set": _mean([s["top1_set"] for s in scores]),
        "mean_top1_set_ci95": mean_interval(scores),
        "mean_top1": _mean([s["top1"] for s in scores]),
        "mean_coarse": _mean([s.get("coarse_accuracy") for s in scores]),
        "pooled_top1_set": right / n if n else None,
        "pooled_top1_set_ci95": M.wilson_interval(right, n),
        "mean_not_sure": _mean([s["not_sure"]["not_sure_rate"] for s in scores]),
        "mean_not_sure_ood": _mean([s["ood"]["not_sure_rate"] for s in scores]),
        "mean_not_sure_ood_at_refusals": _mean(
            [s["ood"].get("not_sure_at_refusals") for s in scores]
        ),
    }


def summarise(folds: Sequence[dict]) -> dict:
    """Means over the left-out sources and, separately, per holdout-only source."""
    left, holdout = [], {}
    for fold in folds:
        for name, s in (fold.get("scored") or {}).items():
            if s["role"] == "left_out":
                left.append(s)
            else:
                holdout.setdefault(name, []).append(s)
    return {
        "left_out": mean_block(left),
        "holdout": {name: mean_block(v) for name, v in sorted(holdout.items())},
        "holdout_all": mean_block([s for v in holdout.values() for s in v]),
    }


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


def _with_ci(x: float | None, ci: Sequence[float] | None) -> str:
    if x is None:
        return "–"
    return _pct(x) + ("" if ci is None else f" ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})")


def _rate_n(stats: dict | None) -> str:
    if not stats or not stats.get("n"):
        return "– (0)"
    return f"{_pct(stats['not_sure_rate'])} ({stats['n']})"


def main_table(result: dict) -> list[str]:
    """| left out | trained on | ... | one row per left-out source, then the mean."""
    lines = [
        "| left out | trained on | n | top-1 (95 % CI) | exact top-1 (n) | paper = cardboard "
        "| not sure on it | not sure on seen test (n) | not sure on its OOD (n) "
        f"| on its OOD at {100 * DEFAULT_REFUSALS:.0f} % refusals |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fold in result["folds"]:
        for name, s in (fold.get("scored") or {}).items():
            if s["role"] != "left_out":
                continue
            lines.append(
                f"| {name} | {', '.join(fold['train_sources'])} | {s['n']} "
                f"| {_with_ci(s['top1_set'], s['top1_set_ci95'])} "
                f"| {_pct(s['top1'])} ({s['n_exact']}) | {_pct(s.get('coarse_accuracy'))} "
                f"| {_pct(s['not_sure']['not_sure_rate'])} "
                f"| {_rate_n(fold.get('seen_test'))} | {_rate_n(s['ood'])} "
                f"| {_pct(s['ood'].get('not_sure_at_refusals'))} |"
            )
        if not fold.get("scored"):
            lines.append(
                f"| {', '.join(fold['left_out'])} | {', '.join(fold['train_sources'])} "
                f"| – | no model ({fold.get('status', 'missing')}) | | | | | | |"
            )
    m = result["summary"]["left_out"]
    lines += [
        "",
        f"Mean top-1 over {m['n_scores']} left-out source(s): "
        f"{_with_ci(m['mean_top1_set'], m.get('mean_top1_set_ci95'))} (pooled over {m['n_items']} items: "
        f"{_with_ci(m['pooled_top1_set'], m['pooled_top1_set_ci95'])}); "
        f"mean exact top-1 {_pct(m['mean_top1'])}; mean with paper = cardboard "
        f"{_pct(m.get('mean_coarse'))}; mean 'not sure' on the left-out sources' OOD items "
        f"{_pct(m['mean_not_sure_ood'])} by each card's bar, "
        f"{_pct(m.get('mean_not_sure_ood_at_refusals'))} at the bar refusing "
        f"{100 * DEFAULT_REFUSALS:.0f} % of the training sources' test items.",
        "",
        "'paper = cardboard' counts the two as one class: a fold whose training sources "
        "label neither exactly (web-mixed has only 'one of paper or cardboard') cannot learn "
        "which is which, and this column shows the part of its score a recipe can move.",
    ]
    return lines


def holdout_table(result: dict) -> list[str]:
    """Holdout-only sources: scored by every fold's model, never trained on."""
    summary = result["summary"]
    if not summary["holdout"]:
        return []
    lines = [
        "",
        "## Holdout-only sources (never trained on)",
        "",
        "| holdout | model | n | top-1 (95 % CI) | exact top-1 (n) | not sure on it "
        "| not sure on its OOD (n) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fold in result["folds"]:
        for name, s in (fold.get("scored") or {}).items():
            if s["role"] == "holdout":
                lines.append(
                    f"| {name} | {fold['name']} | {s['n']} "
                    f"| {_with_ci(s['top1_set'], s['top1_set_ci95'])} "
                    f"| {_pct(s['top1'])} ({s['n_exact']}) "
                    f"| {_pct(s['not_sure']['not_sure_rate'])} | {_rate_n(s['ood'])} |"
                )
    lines.append("")
    for name, m in summary["holdout"].items():
        lines.append(
            f"Mean top-1 on holdout {name} over {m['n_scores']} model(s): "
            f"{_pct(m['mean_top1_set'])}."
        )
    return lines


def recall_table(result: dict) -> list[str]:
    """Per-class recall (exactly-labelled items) of each scored source; – where absent."""
    lines = [
        "",
        "## Per-class recall (exactly-labelled items)",
        "",
        "| scored | model | " + " | ".join(CLASSES) + " |",
        "| --- | --- |" + " ---: |" * len(CLASSES),
    ]
    for fold in result["folds"]:
        for name, s in (fold.get("scored") or {}).items():
            cells = []
            for c in CLASSES:
                support = s["per_class"][c]["support"]
                cells.append(f"{_pct(s['recall'][c])} ({support})" if c in s["recall"] else "–")
            lines.append(f"| {name} | {fold['name']} | " + " | ".join(cells) + " |")
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


TERMS = {"ood_sources": "outlier exposure", "distill_sources": "distillation"}


def folds_section(result: dict) -> list[str]:
    """Training status, time and what each fold dropped from the recipe."""
    lines = ["", "## Folds", ""]
    for fold in result["folds"]:
        secs = fold.get("train_seconds")
        took = "" if secs is None else f", {_duration(secs)} training"
        lines.append(f"- {fold['name']}: {fold.get('status', '–')}{took}; model `{fold['model']}`")
        teachers = sorted({t for s in fold.get("stages", []) for t in s.get("teachers") or ()})
        if teachers:
            lines.append(f"  - distilled from {', '.join(f'`{t}`' for t in teachers)}")
        for d in fold.get("dropped_phases", []):
            if d.get("term"):
                term = TERMS[d["term"]]
                lines.append(
                    f"  - stage {d['stage']} ({d['recipe']}) without {term}: "
                    f"it draws only on {', '.join(d['sources'])}"
                )
                continue
            what = f"phase `{d['phase']}`" if d.get("phase") else "the whole stage"
            lines.append(
                f"  - dropped stage {d['stage']} ({d['recipe']}) {what}: "
                f"it trains only on {', '.join(d['sources'])}"
            )
    return lines


def _rule_text(result: dict) -> str:
    """How the result's models said "not sure": one bar for all, or each card's own rule."""
    if result.get("threshold") is not None:
        return f"; 'not sure' below {result['threshold']:.2f} (each model card's sureness)"
    folds = result.get("folds", [])
    rules = sorted({f["not_sure_rule"] for f in folds if f.get("not_sure_rule")})
    return "; 'not sure': " + (", ".join(rules) or "each model card's rule")


def render_markdown(result: dict) -> str:
    """shift.md: the tables a reviewer pastes into a results page."""
    res = result.get("resolution_pct")
    recipes = " -> ".join(result.get("recipes") or []) or "existing model"
    lines = [
        f"# Domain shift: {recipes}",
        "",
        f"Manifest `{result['manifest']}`; resolution "
        + (f"{res:g} % (override)" if res else "the recipe's own")
        + _rule_text(result)
        + (f"; overrides `{result['overrides']}`" if result.get("overrides") else "")
        + ".",
        "",
        "Top-1 is set-aware (a set label such as paper|cardboard is right when the "
        "prediction is in it) over ALL of the left-out source's items (train, val and test: "
        "the model never saw the source); 95 % Wilson interval. Exact top-1 counts "
        "exactly-labelled items only. 'Seen test': the training sources' test items.",
        "",
        *main_table(result),
        *holdout_table(result),
        *recall_table(result),
        *folds_section(result),
    ]
    return "\n".join(lines) + "\n"
