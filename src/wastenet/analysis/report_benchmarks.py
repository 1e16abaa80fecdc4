"""BENCHMARKS.md, the user's page: what ships, how fast it runs where, how to regenerate it.

Rendered by ``wastenet report --benchmarks-md BENCHMARKS.md`` from the committed
benchmarks/results/*.json and the bundled model's evaluation only: no machine paths, no
history. A number no result holds reads "not measured yet".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from wastenet.analysis import report_speed
from wastenet.analysis.report_accuracy import _is_bundled
from wastenet.analysis.report_inputs import UNKNOWN, Inputs, Source
from wastenet.analysis.report_model import (
    DASH,
    NOT_MEASURED,
    Report,
    is_number,
    millions,
    num,
    pct,
    pct_ci,
)
from wastenet.analysis.report_shipped import (
    SHIPPED_MODEL_DIR,
    by,
    loso_lines,
    previous_lines,
    shipped_comparisons,
    shipped_loso,
    shipped_shifts,
    unseen_lines,
)
from wastenet.runtime.timings import stage_order

COMMAND = "wastenet report --out runs/report --benchmarks-md BENCHMARKS.md"
OTHER_DEVICES = (
    ("NVIDIA Jetson Nano (the paper's device; TensorRT FP16)", "jetson"),
    ("Raspberry Pi (ONNX Runtime / OpenVINO on ARM)", "raspberry"),
)


def _committed(source: Source) -> int:
    """When git last committed the file (orders results that carry no date), 0 if unknown."""
    if source.path is None:
        return 0
    try:
        out = subprocess.run(
            ["git", "log", "-1", "--format=%ct", "--", source.path.name],
            cwd=source.path.parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return int(out.stdout.strip() or 0)
    except (OSError, ValueError, subprocess.SubprocessError):
        return 0


def _shipped_eval(inputs: Inputs) -> Source | None:
    return next((s for s in inputs.of("evaluate") if _is_bundled(s)), None)


def accuracy_lines(inputs: Inputs) -> list[str]:
    ev, model = _shipped_eval(inputs), inputs.model
    lines = ["## The shipped model: accuracy", ""]
    if model:
        meta = model.get("meta") or {}
        size = "x".join(str(x) for x in meta.get("input_size", [])) or UNKNOWN
        lines += [
            f"`{model['label']}`: {meta.get('architecture', UNKNOWN)}, "
            f"{millions(model['parameters'])} parameters, {num(model['size_mb'])} MB, input "
            f"{size} (height x width), calibrated temperature {num(meta.get('temperature'), '.3f')}.",
            "",
        ]
    if ev is None:
        return lines + [f"Test-split accuracy: {NOT_MEASURED}.", ""]
    d = ev.data
    lines += [
        '| test split | items | top-1 (95 % CI) | set-aware top-1 | "not sure" at '
        f"{d.get('threshold', 0.7)} | accuracy when sure | calibration error (ECE) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    groups = list(d.get("per_source", {}).items()) + [("all", d.get("overall", {}))]
    for name, g in groups:
        ns = g.get("not_sure", {})
        exact = f" ({g['n_exact']} exact)" if g.get("n_exact") != g.get("n") else ""
        lines.append(
            f"| {name} | {g.get('n', '?')}{exact} | {pct_ci(g.get('top1'), g.get('top1_ci95'))} "
            f"| {pct(g.get('set_accuracy'))} | {pct(ns.get('not_sure_rate'))} | "
            f"{pct(ns.get('accuracy_confident'))} | {pct(g.get('ece'))} |"
        )
    ood, rob = d.get("ood") or {}, d.get("robustness") or {}
    lines.append("")
    if ood:
        lines.append(
            f"Out-of-distribution items ({ood.get('n')}, not one of the five classes): "
            f'"not sure" on {pct(ood.get("not_sure_rate"))}. '
        )
    if rob:
        lines.append(
            f"Robustness suite (glare, dim light, small in frame, blur, noise, JPEG; "
            f"severities {', '.join(str(s) for s in rob.get('severities', []))}): mean "
            f"accuracy {pct(rob.get('mean_corruption_accuracy'))} against "
            f"{pct(rob.get('clean_accuracy'))} clean."
        )
    lines += [
        "",
        f"Measured by {by(ev)}; the full report is in `{SHIPPED_MODEL_DIR}evaluation/`.",
        "",
    ]
    return lines + unseen_lines(inputs) + previous_lines(inputs) + loso_lines(inputs)


def _shipped_reference(bench: Source, inputs: Inputs, matched) -> bool:
    """Whether verify's FP32 reference scored what the shipped model's evaluation did
    (the same model on the same test split)."""
    ev = _shipped_eval(inputs)
    target = ev.data.get("overall", {}).get("set_accuracy") if ev else None
    refs = [m[0].get("reference_accuracy") for m in matched if m]
    return is_number(target) and any(is_number(r) and abs(r - 100 * target) < 0.01 for r in refs)


def pick_benches(inputs: Inputs) -> dict[str, tuple[Source, list, list]]:
    """Per machine, the engine run to show: one whose verify reference is the shipped
    model, then the latest by its date, then by when git committed it."""
    report = Report(inputs, plots=False)
    best: dict[str, tuple] = {}
    for bench in inputs.of("bench"):
        rows, matched = report_speed.engine_rows(report, bench)
        key = (
            _shipped_reference(bench, inputs, matched),
            bench.prov["date"] != UNKNOWN,
            bench.prov["date"],
            _committed(bench),
        )
        machine = bench.prov["machine"]
        if machine not in best or key > best[machine][0]:
            best[machine] = (key, bench, rows, matched)
    return {m: (b, rows, matched) for m, (_, b, rows, matched) in best.items()}


def recommended(rows: list[dict]) -> int | None:
    """The fastest engine that passed verify."""
    ok = [i for i, r in enumerate(rows) if r["passed"] and is_number(r["ips"])]
    return max(ok, key=lambda i: rows[i]["ips"]) if ok else None


def engine_lines(inputs: Inputs) -> list[str]:
    lines = [
        "## Engines, per device",
        "",
        'Batch 1, medians; IPS = 1 / p50. "drop" is top-1 points lost against the '
        "FP32 model on the test split; verify fails a drop above its limit. The "
        "recommended engine is the fastest that passes.",
        "",
    ]
    picked = pick_benches(inputs)
    for machine, (bench, rows, matched) in picked.items():
        best = recommended(rows)
        lines += [
            f"### {machine if machine != UNKNOWN else 'Machine not recorded'}",
            "",
            "| engine | size (MB) | p50 (ms) | p95 (ms) | IPS | drop vs FP32 (pts) | verify |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for i, r in enumerate(rows):
            name = f"**{r['engine']} (recommended)**" if i == best else r["engine"]
            drop = DASH if r["reference"] else num(r["drop"], ".2f")
            lines.append(
                f"| {name} | {num(r['size_mb'])} | {num(r['p50_ms'], '.2f')} | "
                f"{num(r['p95_ms'], '.2f')} | {num(r['ips'], '.0f')} | {drop} | "
                f"{report_speed.verdict(r)} |"
            )
        verifies = sorted({m[1].label: m[1] for m in matched if m}.values(), key=lambda s: s.label)
        lines += ["", f"Speed: {by(bench)}."]
        lines += [f"Accuracy: {by(v)}." for v in verifies] + [""]
    for gpu in inputs.of("gpu_torch"):
        lines += gpu_lines(gpu)
    benched = " ".join(picked).lower() + " ".join(str(g.data) for g in inputs.of("gpu_torch"))
    for name, key in OTHER_DEVICES:
        if key not in benched.lower():
            lines += [f"### {name}", "", f"{NOT_MEASURED}.", ""]
    return lines


def gpu_lines(gpu: Source) -> list[str]:
    lines = [
        f"### {gpu.data.get('gpu', 'GPU')} (PyTorch)",
        "",
        "| engine | batch | p50 (ms) | p95 (ms) | images/s |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for key, label in report_speed.GPU_ROWS:
        r = gpu.data.get(key)
        if isinstance(r, dict):
            lines.append(
                f"| {label} | {r.get('batch', '?')} | {num(r.get('p50_ms'), '.2f')} | "
                f"{num(r.get('p95_ms'), '.2f')} | {num(r.get('images_per_s'), '.0f')} |"
            )
    lines += [
        "",
        f"TensorRT, ONNX Runtime and OpenVINO on this GPU: {NOT_MEASURED} "
        f"(TensorRT: {gpu.data.get('tensorrt', UNKNOWN)}). Measured by {by(gpu)}.",
        "",
    ]
    return lines


def loop_lines(inputs: Inputs) -> list[str]:
    lines = ["## The bin loop", ""]
    loops = inputs.of("loop")
    if not loops:
        return lines + [f"Frame rate: {NOT_MEASURED}.", ""]
    latest = _latest(loops)
    lines += [
        "Frames per second of the whole loop (read, preprocess, infer, vote, doors, "
        "record) replaying the bundled samples, with the presence gate off (every "
        "frame inferred) and on (only frames where something changed).",
        "",
        "| engine | presence gate | frames/s | frames inferred | time in inference |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for r in report_speed.loop_rows(latest):
        lines.append(
            f"| {r['engine']} | {'on' if r['gate'] else 'off'} | {num(r['fps'])} | "
            f"{r['inferred']} | {pct(r['inference_share'])} |"
        )
    lines += stage_lines(report_speed.loop_rows(latest))
    lines += ["", f"Measured by {by(latest)}."]
    if any(" #" in r["engine"] for r in report_speed.loop_rows(latest)):
        lines.append(
            "Engines marked #1, #2 share a file name: #1 was given to the benchmark first "
            "(this result does not record their paths)."
        )
    lines.append("")
    runs = [s for s in inputs.of("run") if s.data.get("measured", {}).get("latency")]
    if runs:
        run = _latest(runs)
        lat = run.data["measured"]["latency"]
        lines += [
            f"Item shown to door moving (a bin run, vote window N = {lat['n']}, "
            f"{num(lat['ips'])} inferences/s, actuator "
            f"`{run.data.get('config', {}).get('actuator') or UNKNOWN}`, its servo delay included): "
            f"{num(lat['measured_total_s'], '.3f')} s measured, "
            f"{num(lat['eq2_total_s'], '.3f')} s by the paper's equation 2. "
            f"Measured by {by(run)}.",
            "",
        ]
    return lines


def stage_lines(rows: list[dict]) -> list[str]:
    """Median milliseconds per loop stage, gate off (every frame through every stage)."""
    rows = [r for r in rows if not r["gate"] and r.get("stage_ms")]
    stages = stage_order(k for r in rows for k in r["stage_ms"])
    if not rows or not stages:
        return []
    lines = [
        "",
        "Median milliseconds per frame in each stage (presence gate off):",
        "",
        "| engine | " + " | ".join(stages) + " |",
        "| --- |" + " ---: |" * len(stages),
    ]
    for r in rows:
        cells = [num(r["stage_ms"].get(k), ".2f") for k in stages]
        lines.append(f"| {r['engine']} | " + " | ".join(cells) + " |")
    return lines


def soak_checks(result: dict) -> list[tuple[str, str, bool]]:
    """(check, what was measured, passed) of a soak result (benchmarks/bench_soak.py)."""
    c, settings = result["checks"], result.get("settings", {})
    mem, fps, store = c["memory"], c["fps"], c["store"]
    files = c["rotation"]["files"]
    return [
        ("memory", f"RSS spread {mem['spread_mb']} MB over the last "
                   f"{mem['window_s'] / 60:g} min (whole run {mem['whole_run_mb'][0]} -> "
                   f"{mem['whole_run_mb'][1]} MB)", mem["passed"]),
        ("frame rate", f"{fps['first_third']} -> {fps['last_third']} frames/s, lowest "
                       f"{fps['lowest']} (median {fps['median']})", fps["passed"]),
        ("log rotation", ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in files.items()),
         c["rotation"]["passed"]),
        ("store", f"{store['rows']} rows, {store['bytes'] / 1e6:.1f} MB of "
                  f"{settings.get('quota_mb', '?')} MB, {store['tmp_files']} temporary files, "
                  f"{store['missing_images']} rows without their image", store["passed"]),
        ("stream clients", f"{c['clients']['frames']} frames", c["clients"]["passed"]),
        ("exit", f"code {c['exit']['exit_code']}", c["exit"]["passed"]),
    ]  # fmt: skip


def soak_lines(inputs: Inputs) -> list[str]:
    soaks = inputs.of("soak")
    if not soaks:
        return ["### A long run", "", f"{NOT_MEASURED}.", ""]
    soak = _latest(soaks)
    settings = soak.data.get("settings", {})
    lines = [
        f"### A {num(settings.get('minutes'), '.0f')}-minute run",
        "",
        f"`wastenet run` (engine: {soak.data.get('engine', 'not recorded')}) on the bundled "
        f"samples looped for ever at "
        f"{num(settings.get('fps'), '.0f')} frames/s, with the sample store on (every frame "
        f"offered, a {num(settings.get('quota_mb'), '.0f')} MB quota) and the MJPEG stream "
        "read by two HTTP clients.",
        "",
        "| check | measured | passed |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {n} | {t} | {'yes' if ok else 'NO'} |" for n, t, ok in soak_checks(soak.data)]
    return lines + ["", f"Measured by {by(soak)}.", ""]


def limits_lines(inputs: Inputs) -> list[str]:
    lines = ["## Known limits", ""]
    for machine, (_bench, rows, _) in pick_benches(inputs).items():
        for r in rows:
            if r["passed"] is False:
                where = "there" if machine == UNKNOWN else f"on {machine}"
                lines.append(
                    f"- {r['engine']} fails verify {where} (drop {num(r['drop'], '.2f')} "
                    "points against FP32): use the recommended engine."
                )
    for s in shipped_shifts(inputs):
        for fold in s.data.get("folds", []):
            for name, sc in fold.get("scored", {}).items():
                if is_number(sc.get("top1_set")) and sc["top1_set"] < 0.8:
                    lines.append(
                        f"- On {name}, a source it never saw, top-1 is {pct(sc['top1_set'])}: "
                        "test-split accuracy overstates what a bin in new light and clutter meets."
                    )
    if not inputs.of("realworld"):
        lines.append(f"- The paper's 40-item real-world test with a bin: {NOT_MEASURED}.")
    if not inputs.of("power", "rapl"):
        lines.append(f"- Power per state and inferences per watt: {NOT_MEASURED}.")
    if not any("tensorrt" in str(s.data).lower() for s in inputs.of("bench")):
        lines.append(f"- TensorRT engines (Jetson, NVIDIA GPUs): {NOT_MEASURED}.")
    old = [s for s in _shown(inputs) if s.prov["command"] == UNKNOWN]
    if old:
        lines.append(
            f"- {len(old)} of the results above predate provenance recording, so their "
            'command, date and machine read "unknown"; results written now record all three.'
        )
    return lines + [""]


def _shown(inputs: Inputs) -> list[Source]:
    """The results this page shows."""
    shown = [s for s in (_shipped_eval(inputs),) if s]
    shown += shipped_shifts(inputs) + shipped_comparisons(inputs) + shipped_loso(inputs)
    for bench, _, matched in pick_benches(inputs).values():
        shown += [bench] + [m[1] for m in matched if m]
    shown += inputs.of("gpu_torch")
    loops = inputs.of("loop")
    if loops:
        shown.append(_latest(loops))
    return list({id(s): s for s in shown}.values())


def _latest(sources: list[Source]) -> Source:
    return max(sources, key=lambda s: (s.prov["date"] != UNKNOWN, s.prov["date"], _committed(s)))


def render(inputs: Inputs) -> str:
    shown = _shown(inputs)
    machines = sorted({s.prov["machine"] for s in shown} - {UNKNOWN})
    unrecorded = sum(s.prov["machine"] == UNKNOWN for s in shown)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated from benchmarks/results/*.json and the bundled model's evaluation; "
        "edit those and regenerate, not this page. -->",
        "",
        "What ships, how accurate it is and how fast it runs. Regenerate this page from the "
        "committed results with:",
        "",
        "```bash",
        COMMAND,
        "```",
        "",
        "Machines: "
        + ("; ".join(machines) or "not recorded")
        + (
            f" ({unrecorded} of the {len(shown)} results shown do not record theirs)"
            if unrecorded
            else ""
        )
        + '. Each table names the command, date and machine of its result ("unknown" where '
        "the result predates their recording). `wastenet report` draws the paper's tables "
        "4-7 and figures 8-15 from these and any other results.",
        "",
    ]
    lines += accuracy_lines(inputs) + engine_lines(inputs) + loop_lines(inputs) + soak_lines(inputs)
    lines += limits_lines(inputs)
    return "\n".join(lines).rstrip() + "\n"


def write(inputs: Inputs, path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(inputs), encoding="utf-8")
    return path
