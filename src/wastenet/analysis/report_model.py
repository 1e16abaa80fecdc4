"""What ``wastenet report`` renders: sections of tables and figures whose every row cites
the input it came from ([n] in the page's list of inputs, with command, date, machine).

A number no input holds is written NOT_MEASURED, never estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from wastenet.analysis.report_inputs import UNKNOWN, Inputs, Source

NOT_MEASURED = "not measured yet"
NOT_RECORDED = "not recorded"
DASH = "–"

# The paper is cited like any input; its numbers are copied from its text and tables.
PAPER = Source(
    label="the paper (WasteNet at the edge), as published",
    kind="paper",
    data={},
    prov={
        "command": "the authors' own runs",
        "date": "as published",
        "machine": "NVIDIA Jetson Nano (inference, power), a GPU (training)",
    },
)


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Figure:
    key: str  # "fig-8": the figure's file name and HTML id
    title: str
    svg: str | None  # inline SVG, None where it is not drawn (see note)
    note: str = ""
    refs: list[str] = field(default_factory=list)


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    blocks: list[Table | Figure] = field(default_factory=list)


class Report:
    """Sections plus the numbered inputs they cite."""

    def __init__(self, inputs: Inputs, plots: bool = True) -> None:
        self.inputs = inputs
        self.plots = plots  # False: matplotlib missing, tables only
        self.sections: list[Section] = []
        self.cited: list[Source] = []

    def cite(self, source: Source) -> str:
        """``[n]``: the source's number in the list of inputs (numbered on first use)."""
        for i, known in enumerate(self.cited):
            if known is source:
                return f"[{i + 1}]"
        self.cited.append(source)
        return f"[{len(self.cited)}]"

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section


# --- formatting ---------------------------------------------------------------------------


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def pct(fraction, digits: int = 1) -> str:
    """0.95 -> '95.0 %'; NOT_MEASURED for None."""
    return f"{100 * fraction:.{digits}f} %" if is_number(fraction) else NOT_MEASURED


def pct_ci(fraction, ci=None, digits: int = 1) -> str:
    """'95.0 % (91.4-97.1)' with a 95 % interval where one is given."""
    text = pct(fraction, digits)
    pair = isinstance(ci, list | tuple) and len(ci) == 2
    if is_number(fraction) and pair and all(is_number(c) for c in ci):
        text += f" ({100 * ci[0]:.{digits}f}-{100 * ci[1]:.{digits}f})"
    return text


def num(value, spec: str = ".1f", missing: str = NOT_MEASURED) -> str:
    return format(value, spec) if is_number(value) else missing


def millions(count) -> str:
    return f"{count / 1e6:.2f} M" if is_number(count) else NOT_RECORDED


def provenance_line(source: Source) -> str:
    p = source.prov
    line = f"{source.label}: `{p.get('command', UNKNOWN)}`, {p.get('date', UNKNOWN)}, "
    line += f"on {p.get('machine', UNKNOWN)}"
    return line + (f" ({p['note']})" if p.get("note") else "")


def short_date(source: Source) -> str:
    """The date part of a source's date (``2026-11-26``), or UNKNOWN."""
    date = source.prov.get("date", UNKNOWN)
    return date[:10] if date and date[:4].isdigit() else UNKNOWN
