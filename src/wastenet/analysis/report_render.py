"""``wastenet report``: build the sections from the inputs and write report.html (one
self-contained page: inline SVG figures, inline CSS, no script, nothing fetched) and
report.md (figures as SVG files beside it)."""

from __future__ import annotations

import datetime
import html
import re
from pathlib import Path

from wastenet.analysis import report_accuracy, report_power, report_speed
from wastenet.analysis.report_inputs import Inputs
from wastenet.analysis.report_model import Figure, Report, Table, provenance_line
from wastenet.plotting import NOTE as NO_MATPLOTLIB

TITLE = "WasteNet results: the paper's tables and figures, measured here"
BUILDERS = (
    report_accuracy.models_section,
    report_speed.engines_section,
    report_accuracy.realworld_section,
    report_accuracy.per_source_section,
    report_power.power_section,
    report_speed.latency_section,
    report_speed.loop_section,
)
CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.25rem 0; }
figure { margin: 1rem 0 2rem; }
figure.plot svg { max-width: 100%; height: auto; display: block; }
figure.missing p { border: 1px dashed #999; padding: 1rem; color: #555; }
figcaption { font-size: 0.85rem; color: #444; }
code { background: #f4f4f4; padding: 0 0.2rem; }
.note { color: #555; font-size: 0.85rem; }
ol.inputs li { margin-bottom: 0.4rem; font-size: 0.85rem; }
"""


def build(inputs: Inputs, plots: bool | None = None) -> Report:
    """Every section from the inputs; ``plots`` None: draw where matplotlib is installed."""
    if plots is None:
        from wastenet.plotting import pyplot

        plots = pyplot() is not None
    report = Report(inputs, plots)
    for builder in BUILDERS:
        builder(report)
    return report


# --- Markdown -----------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> list[str]:
    lines = [f"**{table.title}**", ""] if table.title else []
    lines.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
    lines.append("| " + " | ".join("---" for _ in table.columns) + " |")
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines + ([""] + [table.note] if table.note else []) + [""]


def render_markdown(report: Report, generated: str, figure_dir: str = "figures") -> str:
    lines = [
        f"# {TITLE}",
        "",
        f"Generated {generated} by `wastenet report`. Each row's "
        "source [n] is listed at the end with its command, date and machine.",
        "",
    ]
    if not report.plots:
        lines += [f"*{NO_MATPLOTLIB}*", ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""] + ([section.intro, ""] if section.intro else [])
        for block in section.blocks:
            if isinstance(block, Table):
                lines += markdown_table(block)
                continue
            if block.svg:
                lines += [f"![{block.title}]({figure_dir}/{block.key}.svg)", ""]
            lines += [f"*{block.title}*" + (f": {block.note}" if block.note else "") + "", ""]
    lines += ["## Inputs", ""]
    lines += [f"{i + 1}. {provenance_line(s)}" for i, s in enumerate(report.cited)]
    if report.inputs.ignored:
        lines += [
            "",
            "Files found but not read (not a result of a kind this report knows): "
            + ", ".join(report.inputs.ignored),
        ]
    return "\n".join(lines) + "\n"


# --- HTML ---------------------------------------------------------------------------------

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_REF = re.compile(r"\[(\d+)\]")


def inline(text: str) -> str:
    """Escaped text with **bold**, `code` and [n] links to the inputs list."""
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return _REF.sub(r'<a href="#src-\1">[\1]</a>', out)


def html_table(table: Table) -> str:
    head = "".join(f"<th>{inline(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in table.rows
    )
    note = f'<p class="note">{inline(table.note)}</p>' if table.note else ""
    return (
        f"<table><caption>{inline(table.title)}</caption><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{note}"
    )


def html_figure(fig: Figure) -> str:
    caption = inline(fig.title + (f": {fig.note}" if fig.note else ""))
    if fig.refs:
        caption += " " + inline(" ".join(fig.refs))
    if fig.svg:
        return f'<figure class="plot" id="{fig.key}">{fig.svg}<figcaption>{caption}</figcaption></figure>'
    why = fig.note or "not drawn"
    return (
        f'<figure class="missing" id="{fig.key}"><p>{inline(why)}</p>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def render_html(report: Report, generated: str) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(TITLE)}</title><style>{CSS}</style>",
        '<link rel="icon" href="data:,"></head><body>',
        f"<h1>{html.escape(TITLE)}</h1>",
        f'<p class="note">Generated {html.escape(generated)} by <code>wastenet report</code>. '
        "Each row's source [n] is listed under Inputs with its command, date and machine; "
        "a number no input holds reads 'not measured yet'.</p>",
    ]
    if not report.plots:
        parts.append(f'<p class="note">{html.escape(NO_MATPLOTLIB)}</p>')
    parts.append("<nav><ul>")
    parts += [f'<li><a href="#{s.key}">{inline(s.title)}</a></li>' for s in report.sections]
    parts.append('<li><a href="#inputs">Inputs</a></li></ul></nav>')
    for section in report.sections:
        parts.append(f'<section id="{section.key}"><h2>{inline(section.title)}</h2>')
        if section.intro:
            parts.append(f"<p>{inline(section.intro)}</p>")
        for block in section.blocks:
            parts.append(html_table(block) if isinstance(block, Table) else html_figure(block))
        parts.append("</section>")
    parts.append('<section id="inputs"><h2>Inputs</h2><ol class="inputs">')
    for i, s in enumerate(report.cited):
        parts.append(f'<li id="src-{i + 1}">{inline(provenance_line(s))}</li>')
    parts.append("</ol>")
    if report.inputs.ignored:
        parts.append(
            f'<p class="note">Files found but not read: {inline(", ".join(report.inputs.ignored))}</p>'
        )
    parts.append("</section></body></html>")
    return "\n".join(parts) + "\n"


def write(report: Report, out: str | Path) -> dict[str, Path]:
    """report.html, report.md and figures/<key>.svg in ``out``."""
    out = Path(out)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    for section in report.sections:
        for block in section.blocks:
            if isinstance(block, Figure) and block.svg:
                (figures / f"{block.key}.svg").write_text(block.svg, encoding="utf-8")
    paths = {"html": out / "report.html", "md": out / "report.md"}
    paths["html"].write_text(render_html(report, generated), encoding="utf-8")
    paths["md"].write_text(render_markdown(report, generated), encoding="utf-8")
    return paths
