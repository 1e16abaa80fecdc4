"""Power section of the report: input power per state (the paper's figure 14) and
inferences per second per watt (figure 15), the paper's figures next to this project's
tegrastats (``wastenet power parse/protocol --json``) and RAPL (``power rapl --json``)."""

from __future__ import annotations

from wastenet.analysis import power
from wastenet.analysis import report_figures as figs
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
)


def power_rows(report: Report) -> list[dict]:
    """This project's power measurements: per state (tegrastats) and RAPL loops."""
    out = []
    for s in report.inputs.of("power"):
        mode = s.data.get("power_mode") or "profile not recorded"
        for r in s.data.get("states", []):
            out.append(
                {
                    "name": f"{r.get('name', '?')} ({mode})",
                    "w": r.get("mean_w"),
                    "ips": r.get("ips"),
                    "ips_per_w": r.get("ips_per_w"),
                    "j": r.get("j_per_inference"),
                    "source": s,
                }
            )
    for s in report.inputs.of("rapl"):
        d = s.data
        if is_number(d.get("idle_w")):
            out.append(
                {
                    "name": "CPU package idle (RAPL)",
                    "w": d["idle_w"],
                    "ips": None,
                    "ips_per_w": None,
                    "j": None,
                    "source": s,
                }
            )
        out.append(
            {
                "name": "CPU package inferring (RAPL)",
                "w": d.get("mean_w"),
                "ips": d.get("ips"),
                "ips_per_w": d.get("ips_per_w"),
                "j": d.get("j_per_inference"),
                "source": s,
            }
        )
    return out


def power_section(report: Report) -> Section:
    section = report.add(
        Section(
            "power",
            "Power per state and efficiency (the paper's figures 14 and 15)",
            "Input power per state; efficiency is IPS per watt. The paper's IPS/W are "
            "recomputed from the IPS and watts its text gives (it states 3.6 for MAXN).",
        )
    )
    paper_ref = report.cite(PAPER)
    f = power.paper_figures()
    paper = [
        ("paper: idle, model loaded", power.PAPER_IDLE_LOADED_W, None, None, None),
        (
            "paper: inferring, MAXN (10 W)",
            power.PAPER_MAXN["inferring_w"],
            power.PAPER_MAXN["ips"],
            f["maxn_ips_per_w"],
            f["maxn_j_per_inference"],
        ),
        (
            "paper: inferring, 5 W profile",
            power.PAPER_5W["inferring_w"],
            power.PAPER_5W["ips"],
            f["5w_ips_per_w"],
            f["5w_j_per_inference"],
        ),
    ]
    ours = power_rows(report)
    rows = [
        [n, num(w, ".2f"), num(i, ".0f", DASH), num(e, ".2f", DASH), num(j, ".3f", DASH), paper_ref]
        for n, w, i, e, j in paper
    ]
    rows += [
        [
            r["name"],
            num(r["w"], ".2f"),
            num(r["ips"], ".1f", DASH),
            num(r["ips_per_w"], ".2f", DASH),
            num(r["j"], ".3f", DASH),
            report.cite(r["source"]),
        ]
        for r in ours
    ]
    if not ours:
        rows.append(["this project's board", *[NOT_MEASURED] * 4, DASH])
    columns = ["state", "power (W)", "IPS", "IPS per W", "J per inference", "source"]
    section.blocks.append(Table("Power per state", columns, rows))
    grey, blue = figs.PAPER_COLOUR, figs.OURS_COLOUR
    legend = {"the paper": grey, "this project": blue}
    watts = [(n, w, grey) for n, w, *_ in paper] + [
        (r["name"], r["w"], blue) for r in ours if is_number(r["w"])
    ]
    eff = [(n, e, grey) for n, _, _, e, _ in paper if e] + [
        (r["name"], r["ips_per_w"], blue) for r in ours if is_number(r["ips_per_w"])
    ]
    note = "" if ours else f"this project: {NOT_MEASURED} (wastenet power protocol / rapl --json)"
    for key, title, items, xlabel in (
        ("fig-14", "Figure 14: input power per state", watts, "W"),
        ("fig-15", "Figure 15: efficiency, inferences per second per watt", eff, "IPS / W"),
    ):
        svg = (
            figs.hbars(
                [x[0] for x in items],
                [x[1] for x in items],
                xlabel,
                key,
                [x[2] for x in items],
                "{:.2f}",
                legend,
            )
            if report.plots
            else None
        )
        section.blocks.append(Figure(key, title, svg, note, [paper_ref]))
    return section
