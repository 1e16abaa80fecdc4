"""Accuracy sections of the report: the paper's table 4 and figure 8 (models), figure 12
(per source, mixed against single-source), tables 6-7 and figures 10/13 (real world)."""

from __future__ import annotations

from wastenet.analysis import report_figures as figs
from wastenet.analysis.report_inputs import BUNDLED, Source
from wastenet.analysis.report_model import (
    DASH,
    NOT_MEASURED,
    NOT_RECORDED,
    PAPER,
    Figure,
    Report,
    Section,
    Table,
    is_number,
    millions,
    num,
    pct,
    pct_ci,
)

SOURCES = ("trashnet", "web-mixed")  # the project's test splits, the columns of table 4
# (model, parameters, size MB, epochs, val %, test %, on the Jetson)
PAPER_TABLE4 = (
    ("DenseNet169", 12642880, 81, 91, 95.7, 95.3781, "out of memory"),
    ("EfficientNet-B3", 10783535, 53, 50, 97.9, 95.7983, "out of memory"),
    ("EfficientNet-B2", 7768569, 30, 48, 97.3, 95.7983, "95.80 %, 32 s"),
    ("EfficientNet-B0", 4049571, 15.3, 41, 96.5, 95.3781, "95.38 %, 0.32 s"),
    ("EfficientNet-B0, 75 % resolution", 4049571, 15.3, 41, 96.5, 95.3781, "95.38 %, 0.15 s"),
    ("EfficientNet-B0, 50 % resolution", 4049571, 15.3, 41, 94.3, 92.2818, "not tested"),
)
PAPER_MIXED_B0 = ("EfficientNet-B0, mixed data, 75 % (sec. 5.4.2)", 4049571, 0.957983)
# Tables 6 and 7: (model, items, accuracy including errors, excluding errors)
PAPER_REALWORLD = (
    ("B0 @ 75 % resolution (table 6)", 40, 0.825, 0.90),
    ("B0 mixed data @ 75 % resolution (table 7)", 40, 0.94, 0.95),
)


def _is_bundled(source: Source) -> bool:
    return source.path is not None and BUNDLED in source.path.resolve().parents


def _percent_text(text) -> float | None:
    """'95.0%' (compare_eval.json) -> 0.95."""
    try:
        return float(str(text).strip().rstrip("%").strip()) / 100
    except ValueError:
        return None


def compare_eval_models(source: Source) -> dict[str, dict[str, float | None]]:
    """{model name: {source: top-1}} from compare_eval.json's 'SOURCE top-1' rows."""
    names = list(source.data.get("reports", {}))
    out: dict[str, dict] = {name: {} for name in names}
    for metric, values in source.data.get("rows", []):
        if metric.endswith(" top-1"):
            for name, value in zip(names, values, strict=False):
                out[name][metric[: -len(" top-1")]] = _percent_text(value)
    return out


def _best_val(run: dict):
    vals = [r.get("val_acc") for r in run.get("epochs", []) if is_number(r.get("val_acc"))]
    return max(vals) if vals else None


def _source_cells(per_source: dict) -> list[str]:
    return [
        pct_ci(per_source.get(s, {}).get("top1"), per_source.get(s, {}).get("top1_ci95"))
        if s in per_source
        else NOT_MEASURED
        for s in SOURCES
    ]


def model_rows(report: Report) -> tuple[list[list[str]], list[dict]]:
    """Table 4's rows of this project's models, and figure 8's points."""
    inputs, rows, points = report.inputs, [], []
    evals = inputs.of("evaluate")
    trains = inputs.of("train")
    shipped_eval = next((s for s in evals if _is_bundled(s)), None)
    stages = sorted((s for s in trains if _is_bundled(s)), key=lambda s: s.label)
    if inputs.model and shipped_eval:
        refs = " ".join(report.cite(s) for s in [shipped_eval, *stages])
        per_source = shipped_eval.data.get("per_source", {})
        epochs = " + ".join(str(len(s.data["epochs"])) for s in stages) or NOT_MEASURED
        val = _best_val(stages[-1].data) if stages else None
        rows.append(
            [
                "**the shipped model** (bundled)",
                millions(inputs.model["parameters"]),
                num(inputs.model["size_mb"]),
                epochs,
                pct(val),
                *_source_cells(per_source),
                "see the engine tables",
                refs,
            ]
        )
        trash = per_source.get("trashnet", {}).get("top1")
        if is_number(inputs.model["parameters"]) and is_number(trash):
            points.append(
                {
                    "label": "shipped",
                    "params": inputs.model["parameters"],
                    "acc": trash,
                    "ours": True,
                    "star": True,
                }
            )
    for s in evals:
        if s is shipped_eval:
            continue
        model, per_source = s.data.get("model", {}), s.data.get("per_source", {})
        name = str(model.get("path") or s.label).rsplit("/", 1)[-1]
        rows.append(
            [
                name,
                millions(model.get("parameters")),
                num(model.get("file_size_mb")),
                DASH,
                DASH,
                *_source_cells(per_source),
                DASH,
                report.cite(s),
            ]
        )
        trash = per_source.get("trashnet", {}).get("top1")
        if is_number(model.get("parameters")) and is_number(trash):
            points.append(
                {"label": name, "params": model["parameters"], "acc": trash, "ours": True}
            )
    for s in trains:
        if _is_bundled(s):
            continue
        test = s.data.get("metrics", {}).get("test", {})
        cells = [pct(test.get(f"acc_{src}")) if test else NOT_MEASURED for src in SOURCES]
        name = s.data["config"].get("name") or s.label
        rows.append(
            [
                f"`{name}` ({s.data['config'].get('model', '?')})",
                millions(s.data.get("parameters")),
                DASH,
                str(len(s.data["epochs"])),
                pct(_best_val(s.data)),
                *cells,
                DASH,
                report.cite(s),
            ]
        )
        if is_number(s.data.get("parameters")) and is_number(test.get("acc_trashnet")):
            points.append(
                {
                    "label": name,
                    "params": s.data["parameters"],
                    "acc": test["acc_trashnet"],
                    "ours": True,
                }
            )
    for s in inputs.of("compare_eval"):
        for name, accs in compare_eval_models(s).items():
            cells = [pct(accs.get(src)) if src in accs else NOT_MEASURED for src in SOURCES]
            rows.append([name, NOT_RECORDED, DASH, DASH, DASH, *cells, DASH, report.cite(s)])
    return rows, points


def models_section(report: Report) -> Section:
    section = report.add(
        Section(
            "models",
            "Models: size against accuracy (the paper's table 4 and figure 8)",
            "Top-1 on each test split with its 95 % Wilson interval where the evaluation "
            "recorded one. The paper's rows are TrashNet-only models on its own split; its "
            "'on device' column is the Jetson Nano.",
        )
    )
    paper_ref = report.cite(PAPER)
    rows = [
        [
            f"paper: {name}",
            millions(params),
            num(size),
            str(epochs),
            f"{val:.1f} %",
            f"{test:.2f} %",
            DASH,
            device,
            paper_ref,
        ]
        for name, params, size, epochs, val, test, device in PAPER_TABLE4
    ]
    ours, points = model_rows(report)
    if not ours:
        ours = [["this project's models", *[NOT_MEASURED] * 7, DASH, ""]]
    columns = [
        "model",
        "parameters",
        "size (MB)",
        "epochs",
        "val top-1",
        "TrashNet test top-1 (95 % CI)",
        "web-mixed test top-1 (95 % CI)",
        "on device",
        "source",
    ]
    section.blocks.append(Table("Table 4: models", columns, rows + ours))
    paper_points = [
        {
            "label": name.replace("EfficientNet-", ""),
            "params": params,
            "acc": test / 100,
            "ours": False,
        }
        for name, params, _, _, _, test, _ in PAPER_TABLE4
        if "75 %" not in name  # the same point as B0 at 100 %
    ]
    name, params, acc = PAPER_MIXED_B0
    paper_points.append({"label": "B0 mixed", "params": params, "acc": acc, "ours": False})
    svg = figs.params_scatter(paper_points + points) if report.plots else None
    note = "" if points else f"this project's models: {NOT_MEASURED} (no parameter count)"
    section.blocks.append(
        Figure(
            "fig-8",
            "Figure 8: top-1 on TrashNet's test split against parameters",
            svg,
            note,
            [paper_ref],
        )
    )
    return section


def per_source_section(report: Report) -> Section:
    """Figure 12: every model's top-1 per test split, mixed-data against single-source."""
    section = report.add(
        Section(
            "per-source",
            "Per source: mixed data against one source (the paper's figure 12)",
            "Top-1 per test split. The paper's figure 12 compares TrashNet-only models with "
            "its mixed TrashNet + IBM model (95.80 % on TrashNet); here the second source "
            "is web-mixed.",
        )
    )
    series: dict[str, list] = {}
    rows = []
    for s in report.inputs.of("compare_eval"):
        for name, accs in compare_eval_models(s).items():
            series[name] = [accs.get(src) for src in SOURCES]
            rows.append([name, *[pct(v) for v in series[name]], report.cite(s)])
    for s in report.inputs.of("evaluate"):
        if _is_bundled(s) and series:
            continue  # compare_eval's first column is the shipped model's report
        per = s.data.get("per_source", {})
        name = "shipped model" if _is_bundled(s) else s.label
        series[name] = [per.get(src, {}).get("top1") for src in SOURCES]
        rows.append([name, *_source_cells(per), report.cite(s)])
    columns = ["model", *[f"{src} test top-1" for src in SOURCES], "source"]
    section.blocks.append(
        Table("Per-source top-1", columns, rows or [[NOT_MEASURED, DASH, DASH, ""]])
    )
    svg = (
        figs.grouped_bars([f"{s} test" for s in SOURCES], series, "top-1 (%)", "fig-12")
        if report.plots and series
        else None
    )
    section.blocks.append(
        Figure(
            "fig-12",
            "Figure 12: top-1 per test split, per model",
            svg,
            "" if series else NOT_MEASURED,
            sorted({row[-1] for row in rows if row[-1]}),
        )
    )
    return section


def _measured(shift: dict, fold: dict) -> str:
    """What a shift fold scored: a given model by its path, a trained fold by its name and
    the recipe's last stage (a single-fold run reads as that fold, not as a whole table)."""
    if shift.get("mode") == "existing" or fold.get("status") == "given":
        return f"model {fold.get('model', '?')}"
    recipes = shift.get("recipes") or ["?"]
    return f"{fold.get('name', '?')} of {recipes[-1]}"


def _unseen_rows(report: Report) -> tuple[list[list[str]], list[tuple[str, dict, Source]]]:
    """Rows for sources a model never saw (shift.json, object_crop.json) and, per scored
    source, its per-class counts for figures 10/13."""
    rows, classes = [], []
    for s in report.inputs.of("shift"):
        ref = report.cite(s)
        for fold in s.data.get("folds", []):
            for name, sc in fold.get("scored", {}).items():
                ood = sc.get("ood") or {}
                rows.append(
                    [
                        f"{name} ({sc.get('role', '?')}; {_measured(s.data, fold)})",
                        str(sc.get("n", "?")),
                        pct_ci(sc.get("top1_set"), sc.get("top1_set_ci95")),
                        pct(sc.get("not_sure", {}).get("not_sure_rate")),
                        pct(ood.get("not_sure_rate")) if ood else DASH,
                        ref,
                    ]
                )
                counts = {
                    c: v
                    for c, v in (sc.get("per_class") or {}).items()
                    if c in (sc.get("classes") or []) and v.get("support")
                }
                if counts and s.data.get("mode") == "existing":
                    classes.append((f"{name}, {sc.get('n')} items never seen", counts, s))
    for s in report.inputs.of("object_crop"):
        ref = report.cite(s)
        for key, what in (("whole_frame", "whole frame"), ("crop_to_object", "crop to object")):
            r = s.data.get(key, {})
            rows.append(
                [
                    f"object crop replay: {what}",
                    str(r.get("frames", "?")),
                    pct_ci(r.get("top1"), r.get("top1_ci95")),
                    DASH,
                    DASH,
                    ref,
                ]
            )
    return rows, classes


def realworld_section(report: Report) -> Section:
    section = report.add(
        Section(
            "real-world",
            "Real world (the paper's tables 6-7 and figures 10 and 13)",
            "The paper showed 40 recycled items to its bin; 'excluding errors' also counts "
            "the wrong answers it put down to glare or zoom. `wastenet evaluate realworld "
            "outcomes.csv` scores the same protocol; sources no model here trained on are "
            "the stand-in until then.",
        )
    )
    paper_ref = report.cite(PAPER)
    rows = [[name, str(n), pct(a), pct(b), paper_ref] for name, n, a, b in PAPER_REALWORLD]
    realworld = report.inputs.of("realworld")
    for s in realworld:
        d = s.data
        rows.append(
            [
                s.label,
                str(d.get("n")),
                pct(d.get("accuracy_including_errors")),
                pct(d.get("accuracy_excluding_errors")),
                report.cite(s),
            ]
        )
    if not realworld:
        rows.append(
            [
                "this project's bin, the 40-item protocol",
                NOT_MEASURED,
                NOT_MEASURED,
                NOT_MEASURED,
                DASH,
            ]
        )
    columns = ["model", "items", "accuracy including errors", "accuracy excluding errors", "source"]
    section.blocks.append(Table("Tables 6 and 7: real-world accuracy", columns, rows))
    unseen, classes = _unseen_rows(report)
    columns = [
        "source never trained on",
        "items",
        "top-1 (95 % CI)",
        "'not sure'",
        "'not sure' on its out-of-distribution items",
        "source",
    ]
    section.blocks.append(
        Table(
            "Sources never seen in training",
            columns,
            unseen or [[NOT_MEASURED, DASH, DASH, DASH, DASH, ""]],
        )
    )
    bars = [(s.label, s.data["per_category"], s) for s in realworld]
    bars = [
        (t, {c: {"support": v["total"], "right": v["correct"]} for c, v in pc.items()}, s)
        for t, pc, s in bars
    ]
    bars += [
        (
            t,
            {
                c: {"support": v["support"], "right": round(v["recall"] * v["support"])}
                for c, v in pc.items()
            },
            s,
        )
        for t, pc, s in classes
    ]
    for i, (title, counts, s) in enumerate(bars):
        names = list(counts)
        svg = (
            figs.count_bars(
                names,
                [counts[c]["support"] for c in names],
                [counts[c]["right"] for c in names],
                f"fig-10-{i + 1}",
            )
            if report.plots
            else None
        )
        section.blocks.append(
            Figure(
                f"fig-10-{i + 1}",
                f"Figures 10/13: per category, {title}",
                svg,
                "",
                [report.cite(s)],
            )
        )
    if not bars:
        section.blocks.append(
            Figure(
                "fig-10",
                "Figures 10/13: per category",
                None,
                f"{NOT_MEASURED}: no realworld.json and no shift.json of a shipped model",
            )
        )
    return section
