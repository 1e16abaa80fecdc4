"""Speed sections of the report: engines (the paper's table 5, figure 9), the bin loop and
latency (equation 2 against N with measured bin runs)."""

from __future__ import annotations

from pathlib import PurePosixPath

from wastenet.analysis import latency
from wastenet.analysis import report_figures as figs
from wastenet.analysis.report_inputs import Source
from wastenet.analysis.report_model import (
    DASH,
    NOT_MEASURED,
    PAPER,
    Figure,
    Report,
    Section,
    Table,
    is_number,
    num,
    pct,
)

# Table 5: (configuration, size MB, mean inference ms, top-1 %) on the Jetson Nano
PAPER_TABLE5 = (
    ("EfficientNet-B0", 15.3, 320, 95.3781),
    ("TensorRT B0 FP32", 38.1, 160, 95.3781),
    ("TensorRT B0 FP16", 49.5, 90, 95.3781),
    ("TensorRT B0 FP16, 75 % resolution", 49.3, 43, 95.3781),
)
PAPER_IPS_VALUES = (11.0, 17.0, 24.0)  # the paper's 5 W profile, demo and best FP16 rates
GPU_ROWS = (
    ("engine_fp32_b1", "PyTorch FP32, TorchEngine.predict (NumPy in, probabilities out)"),
    ("compute_fp32_b1", "PyTorch FP32, forward only, channels-last"),
    ("compute_fp16_b1", "PyTorch FP16, forward only"),
    ("compute_fp32_b32", "PyTorch FP32, forward only"),
    ("compute_fp16_b32", "PyTorch FP16, forward only"),
)


def _stem_tag(label: str) -> str:
    """'benchmarks/results/engines_stage3.json' -> 'stage3' (what pairs bench and verify)."""
    stem = PurePosixPath(label).stem
    return stem.split("_", 1)[1] if "_" in stem else ""


def _suffix_len(a: str, b: str) -> int:
    pa, pb = PurePosixPath(a).parts, PurePosixPath(b).parts
    n = 0
    while n < min(len(pa), len(pb)) and pa[-1 - n] == pb[-1 - n]:
        n += 1
    return n


def match_verify(bench: Source, verifies: list[Source]) -> list[tuple[dict, Source] | None]:
    """For each bench row, the verify row of the same artifact: the same path, else the
    longest common tail of the path, ties going to the verify file named like the bench
    file (engines_stage3 <-> verify_stage3), then to the later one."""
    out = []
    for row in bench.data["rows"]:
        best, best_key = None, None
        for v in verifies:
            for vrow in v.data["rows"]:
                n = _suffix_len(str(row.get("artifact", "")), str(vrow.get("artifact", "")))
                if n == 0:
                    continue
                exact = row.get("artifact") == vrow.get("artifact")
                key = (exact, n, _stem_tag(v.label) == _stem_tag(bench.label), v.prov["date"])
                if best_key is None or key > best_key:
                    best, best_key = (vrow, v), key
        out.append(best)
    return out


RUNTIMES = (
    ("torch", "PyTorch eager"),
    ("onnx", "ONNX Runtime"),
    ("ort", "ONNX Runtime"),
    ("openvino", "OpenVINO"),
    ("tensorrt", "TensorRT"),
)


def engine_labels(rows: list[dict]) -> list[str]:
    """'OpenVINO INT8', plus the artifact's folder/file where a label appears twice."""
    labels = []
    for r in rows:
        fmt = str(r.get("format", "?"))
        runtime = next((name for key, name in RUNTIMES if fmt.startswith(key)), fmt)
        labels.append(f"{runtime} {str(r.get('precision') or '').upper()}".strip())
    base = list(labels)
    for i, r in enumerate(rows):
        if base.count(base[i]) > 1 and r.get("artifact"):
            path = PurePosixPath(str(r["artifact"]))
            labels[i] += f" ({path.parent.name}/{path.name})"
    return labels


def engine_rows(report: Report, bench: Source) -> tuple[list[dict], list[tuple | None]]:
    rows = bench.data["rows"]
    labels = engine_labels(rows)
    eager = next((r["p50_ms"] for r in rows if r.get("format") == "torch"), None)
    matched = match_verify(bench, report.inputs.of("verify"))
    # the model the verify rows were measured against: its own row is the reference
    references = {PurePosixPath(str(m[0].get("reference", ""))).name for m in matched if m}
    out = []
    for r, label, m in zip(rows, labels, matched, strict=True):
        v = m[0] if m else None
        out.append(
            {
                "engine": label,
                "input": "x".join(str(x) for x in r.get("input_hw", [])) or "?",
                "size_mb": r.get("size_mb"),
                "p50_ms": r.get("p50_ms"),
                "p95_ms": r.get("p95_ms"),
                "ips": r.get("ips_p50"),
                "speedup": eager / r["p50_ms"] if eager and is_number(r.get("p50_ms")) else None,
                "top1": v["accuracy"] if v else None,
                "drop": v["drop_points"] if v else None,
                "passed": v["passed"] if v else None,
                "reference": r.get("format") == "torch"
                or (m is None and PurePosixPath(str(r.get("artifact", ""))).name in references),
            }
        )
    return out, matched


def verdict(row: dict) -> str:
    if row["reference"]:
        return "reference"
    return NOT_MEASURED if row["passed"] is None else ("pass" if row["passed"] else "FAIL")


def engines_section(report: Report) -> Section:
    section = report.add(
        Section(
            "engines",
            "Engines: speed and accuracy per format (the paper's table 5 and figure 9)",
            "Batch 1, medians. IPS is 1 / p50. 'drop' is top-1 points lost against the FP32 "
            "model on the test split (`wastenet verify`); 'verify' passes within its limit.",
        )
    )
    paper_ref = report.cite(PAPER)
    rows = [
        [
            f"paper, Jetson Nano: {name}",
            DASH,
            num(size),
            f"{ms:.0f}",
            DASH,
            num(1000 / ms),
            DASH,
            f"{acc:.2f} %",
            "0.00",
            DASH,
            paper_ref,
        ]
        for name, size, ms, acc in PAPER_TABLE5
    ]
    columns = [
        "engine",
        "input",
        "size (MB)",
        "p50 (ms)",
        "p95 (ms)",
        "IPS",
        "speed-up vs eager",
        "top-1",
        "drop (pts)",
        "verify",
        "source",
    ]
    section.blocks.append(
        Table("Table 5 (the paper; its mean time in the p50 column)", columns, rows)
    )
    section.blocks.append(
        Figure(
            "fig-9-paper",
            "Figure 9 (the paper): inferences per second on the Jetson Nano",
            figs.hbars(
                [n for n, *_ in PAPER_TABLE5],
                [1000 / ms for _, _, ms, _ in PAPER_TABLE5],
                "inferences / s (1000 / mean ms of table 5)",
                "fig-9-paper",
                figs.PAPER_COLOUR,
            )
            if report.plots
            else None,
            "",
            [paper_ref],
        )
    )
    benches = report.inputs.of("bench")
    for i, bench in enumerate(benches):
        data, matched = engine_rows(report, bench)
        refs = {report.cite(bench)} | {report.cite(m[1]) for m in matched if m}
        table = [
            [
                d["engine"],
                d["input"],
                num(d["size_mb"]),
                num(d["p50_ms"], ".2f"),
                num(d["p95_ms"], ".2f"),
                num(d["ips"], ".0f"),
                num(d["speedup"], ".1f", DASH) + ("x" if d["speedup"] else ""),
                f"{d['top1']:.2f} %" if d["top1"] is not None else NOT_MEASURED,
                num(d["drop"], ".2f", DASH if d["reference"] else NOT_MEASURED),
                verdict(d),
                " ".join(sorted(refs)),
            ]
            for d in data
        ]
        section.blocks.append(
            Table(f"Table 5: {bench.label} (machine: {bench.prov['machine']})", columns, table)
        )
        svg = (
            figs.hbars(
                [d["engine"] for d in data],
                [d["ips"] or 0 for d in data],
                "inferences / s (1 / p50)",
                f"fig-9-{i + 1}",
            )
            if report.plots
            else None
        )
        section.blocks.append(
            Figure(
                f"fig-9-{i + 1}",
                f"Figure 9: inferences per second, {bench.label}",
                svg,
                "",
                sorted(refs),
            )
        )
    if not benches:
        section.blocks.append(
            Table("Table 5: this project", columns, [[NOT_MEASURED, *[DASH] * 10]])
        )
    for gpu in report.inputs.of("gpu_torch"):
        ref = report.cite(gpu)
        rows = [
            [
                label,
                str(gpu.data[k].get("batch", "?")),
                num(gpu.data[k].get("p50_ms"), ".2f"),
                num(gpu.data[k].get("p95_ms"), ".2f"),
                num(gpu.data[k].get("images_per_s"), ".0f"),
                ref,
            ]
            for k, label in GPU_ROWS
            if isinstance(gpu.data.get(k), dict)
        ]
        section.blocks.append(
            Table(
                f"On a GPU: {gpu.data.get('gpu', '?')} ({gpu.label})",
                ["engine", "batch", "p50 (ms)", "p95 (ms)", "images/s", "source"],
                rows,
                f"TensorRT there: {gpu.data.get('tensorrt', NOT_MEASURED)}",
            )
        )
    return section


def loop_rows(source: Source) -> list[dict]:
    """One row per loop run; engines of the same file name are told apart by their order
    (``#2``: the second --engine; every engine runs gate off, then gate on)."""
    runs = source.data.get("runs", [])
    names = [
        f"{PurePosixPath(r['engine_path']).parent.name}/{r.get('engine', '?')}"
        if r.get("engine_path")
        else str(r.get("engine", "?"))
        for r in runs
    ]
    starts = [i for i, r in enumerate(runs) if not r.get("gate") or i == 0]
    out = []
    for i, run in enumerate(runs):
        stages = run.get("stages", {})
        name = names[i]
        k = max(j for j, start in enumerate(starts) if start <= i)
        twins = [j for j, start in enumerate(starts) if names[start] == name]
        if len(twins) > 1:
            name += f" #{twins.index(k) + 1}"
        out.append(
            {
                "engine": name,
                "gate": bool(run.get("gate")),
                "fps": run.get("fps"),
                "inferred": f"{run.get('inferred', '?')}/{run.get('frames', '?')}",
                "inference_share": stages.get("inference", {}).get("share"),
                "stage_ms": {k: v.get("median_ms") for k, v in stages.items()},
            }
        )
    return out


def loop_section(report: Report) -> Section:
    section = report.add(
        Section(
            "loop",
            "The bin loop: frames per second",
            "The whole loop (read, preprocess, infer, vote, doors, record) on replayed "
            "frames, with the presence gate off (every frame inferred) and on.",
        )
    )
    for s in report.inputs.of("loop"):
        ref = report.cite(s)
        rows = [
            [
                r["engine"],
                "on" if r["gate"] else "off",
                num(r["fps"]),
                r["inferred"],
                pct(r["inference_share"]),
                ref,
            ]
            for r in loop_rows(s)
        ]
        mem = s.data.get("memory", {})
        note = (
            f"memory over {mem['frames']} frames: {num(mem.get('growth_pct'), '.2f')} % growth"
            if "frames" in mem
            else ""
        )
        columns = ["engine", "presence gate", "frames/s", "inferred", "inference share", "source"]
        section.blocks.append(Table(f"Loop: {s.label}", columns, rows, note))
    if not report.inputs.of("loop"):
        section.blocks.append(Table("Loop", ["frames/s"], [[NOT_MEASURED]]))
    return section


def latency_section(report: Report) -> Section:
    section = report.add(
        Section(
            "latency",
            "Latency: the paper's equation 2 against the vote window N",
            "T_total = (N/2 + 1) / IPS + T_servo, with the paper's T_servo = "
            f"{latency.PAPER_SERVO_DELAY_S} s; crosses are bin runs' medians (item onset to door).",
        )
    )
    paper_ref = report.cite(PAPER)
    rows = [
        [
            "paper demo (sec. 5.6)",
            str(latency.PAPER_N),
            num(latency.PAPER_IPS, ".0f"),
            "0.354",
            num(latency.queue_delay(latency.PAPER_N, latency.PAPER_IPS), ".3f"),
            num(latency.PAPER_TOTAL_S, ".3f"),
            num(latency.equation2(latency.PAPER_N), ".3f"),
            paper_ref,
        ]
    ]
    points, ips_values = [], list(PAPER_IPS_VALUES)
    for s in report.inputs.of("run"):
        lat = s.data.get("measured", {}).get("latency")
        if not lat:
            continue
        rows.append(
            [
                s.label,
                str(lat["n"]),
                num(lat["ips"]),
                num(lat["measured_queue_s"], ".3f"),
                num(lat["eq1_queue_s"], ".3f"),
                num(lat["measured_total_s"], ".3f"),
                num(lat["eq2_total_s"], ".3f"),
                report.cite(s),
            ]
        )
        points.append((lat["n"], lat["measured_total_s"], f"{lat['ips']:.0f} IPS"))
        ips_values.append(round(lat["ips"], 1))
    if not points:
        rows.append(["this project's bin runs", *[NOT_MEASURED] * 6, DASH])
    columns = [
        "run",
        "N",
        "IPS",
        "queue measured (s)",
        "queue, eq. 1 (s)",
        "total measured (s)",
        "total, eq. 2 (s)",
        "source",
    ]
    section.blocks.append(Table("Latency: measured against equations 1-2", columns, rows))
    ns = list(range(1, 31))
    curves = {
        f"{ips:g} IPS": [latency.equation2(n, ips) for n in ns] for ips in sorted(set(ips_values))
    }
    svg = figs.latency_curves(ns, curves, points) if report.plots else None
    note = "" if points else f"measured bin runs: {NOT_MEASURED} (add a run folder: --results)"
    section.blocks.append(
        Figure("fig-eq2", "Equation 2: T_total against N", svg, note, [paper_ref])
    )
    return section
