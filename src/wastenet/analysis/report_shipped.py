"""BENCHMARKS.md's sections on the shipped model beyond its own test split: the sources it
never saw in training (``wastenet shift --model``), its paired comparison with the model
it replaced (``benchmarks/compare_models.py``) and its recipe's leave-one-source-out table
against the previous recipe's (``benchmarks/compare_shift.py``). Results of other models
belong to the experiments, not to this page, so each is picked by the shipped model's path
or, for a recipe, by the name of the training config recorded in the shipped model."""

from __future__ import annotations

from wastenet.analysis.report_inputs import Inputs, Source
from wastenet.analysis.report_model import NOT_MEASURED, num, pct, pct_ci
from wastenet.evaluate.shift_compare import markdown as loso_table

SHIPPED_MODEL_DIR = "src/wastenet/assets/model/"  # as result files name it, from the repo root
SHIPPED_MODEL = SHIPPED_MODEL_DIR + "wastenet-lite0.onnx"


def by(source: Source) -> str:
    """'`command` (date, machine)' for a table's source line."""
    p = source.prov
    return f"`{p['command']}` ({p['date']}; {p['machine']})"


def shipped_shifts(inputs: Inputs) -> list[Source]:
    """``wastenet shift --model`` results of the shipped model."""
    return [
        s
        for s in inputs.of("shift")
        if s.data.get("mode") == "existing"
        and s.data.get("folds")
        and all(str(f.get("model", "")).startswith(SHIPPED_MODEL_DIR) for f in s.data["folds"])
    ]


def shipped_comparisons(inputs: Inputs) -> list[Source]:
    """``compare_models.py`` results whose new model is the shipped one, under the models'
    own "not sure" rules (a ``--sureness`` result is an experiment's)."""
    return [
        s
        for s in inputs.of("compare_models")
        if s.data.get("new") == SHIPPED_MODEL and not s.data.get("sureness")
    ]


def shipped_loso(inputs: Inputs) -> list[Source]:
    """``compare_shift.py`` results whose recipe after ends with the shipped model's stage."""
    meta = (inputs.model or {}).get("meta") or {}
    recipe = (meta.get("train_config") or {}).get("name")
    return [
        s
        for s in inputs.of("compare_shift")
        if recipe and ((s.data.get("after") or {}).get("recipes") or [None])[-1] == recipe
    ]


def loso_lines(inputs: Inputs) -> list[str]:
    """The shipped recipe left one source out at a time, against the previous recipe."""
    found = shipped_loso(inputs)
    lines = ["### Leave-one-source-out: the shipped recipe against the previous one", ""]
    if not found:
        return lines + [
            f"{NOT_MEASURED} (`wastenet shift RECIPE ...` for each recipe, then "
            "`python benchmarks/compare_shift.py --before ... --after ...`).",
            "",
        ]
    for s in found:
        before, after = s.data.get("before") or {}, s.data.get("after") or {}
        lines += [
            "Each recipe trained without the left-out source and scored on all of its items "
            '(set-aware top-1, Wilson 95 %); the outliers\' "not sure" rate is at the bar '
            "that refuses 5 % of the fold's own test items. Before: "
            f"{' + '.join(before.get('recipes') or [])}; after: "
            f"{' + '.join(after.get('recipes') or [])}.",
            "",
            loso_table(s.data),
            "",
            f"Measured by {by(s)}, from {', '.join(before.get('results', []))} (before) and "
            f"{', '.join(after.get('results', []))} (after).",
            "",
        ]
    return lines


def unseen_lines(inputs: Inputs) -> list[str]:
    shifts = shipped_shifts(inputs)
    lines = ["### On sources it never saw in training", ""]
    if not shifts:
        return lines + [f"{NOT_MEASURED} (`wastenet shift --model ...`).", ""]
    lines += ['| source | items | top-1 (95 % CI) | "not sure" |', "| --- | ---: | ---: | ---: |"]
    for s in shifts:
        for fold in s.data.get("folds", []):
            for name, sc in fold.get("scored", {}).items():
                lines.append(
                    f"| {name} | {sc.get('n')} | {pct_ci(sc.get('top1_set'), sc.get('top1_set_ci95'))}"
                    f" | {pct(sc.get('not_sure', {}).get('not_sure_rate'))} |"
                )
    return lines + ["", "Measured by " + "; ".join(by(s) for s in shifts) + ".", ""]


def _pair_row(name: str, row: dict) -> str:
    old, new = row.get("old", {}), row.get("new", {})
    return (
        f"| {name} | {row.get('n')} | {num(old.get('accuracy'))} % | {num(new.get('accuracy'))} % "
        f"| {num(row.get('difference_points'), '+.1f')} | {num(row.get('mcnemar_p'), '.2g')} |"
    )


def previous_lines(inputs: Inputs) -> list[str]:
    """The shipped model paired with the model it replaced, item by item."""
    found = shipped_comparisons(inputs)
    lines = ["### Against the previous model", ""]
    if not found:
        return lines + [f"{NOT_MEASURED} (`python benchmarks/compare_models.py OLD NEW`).", ""]
    lines += [
        f"Paired on the same items against `{found[0].data.get('old')}`; p from McNemar's test.",
        "",
        "| items | n | previous | shipped | difference (points) | p |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for s in found:
        d = s.data
        splits = " + ".join(d.get("splits", []))
        for name, row in d.get("per_source", {}).items():
            lines.append(_pair_row(f"{name} ({splits})", row))
        guard = d.get("in_distribution_pooled")
        if guard:
            both = " + ".join(d.get("in_distribution", []))
            lines.append(_pair_row(f"**{both} pooled ({splits}): the guard-rail**", guard))
        sure = d.get("not_sure", {})
        if sure.get("old") and sure.get("new"):
            o, n = sure["old"], sure["new"]
            rule = n.get("rule") or f"top probability below {n.get('threshold')}"
            notes.append(
                f'- "Not sure" ({rule}) on {d.get("ood_items")} '
                f"out-of-distribution items: previous {num(o.get('ood_not_sure'))} % "
                f"(refusing {num(o.get('refusals'))} % of the others), shipped "
                f"{num(n.get('ood_not_sure'))} % (refusing {num(n.get('refusals'))} %)."
            )
        sep = d.get("ood_separation", {})
        if sep.get("old") and sep.get("new"):
            notes.append(
                f"- Out-of-distribution AUROC: previous {num(sep['old'].get('auroc'), '.3f')}, "
                f"shipped {num(sep['new'].get('auroc'), '.3f')}."
            )
    return lines + [""] + notes + ["", "Measured by " + "; ".join(by(s) for s in found) + ".", ""]
