"""The report's figures as inline SVG text (matplotlib, Agg), or None without matplotlib.

Each function takes plain numbers, draws one figure and returns its SVG with every id
prefixed by the figure's key, so several can sit in one HTML page.
"""

from __future__ import annotations

import io
import re

from wastenet.plotting import pyplot

PAPER_COLOUR = "0.55"
OURS_COLOUR = "tab:blue"
STAR_COLOUR = "tab:green"
_HEADER = re.compile(r"^.*?(?=<svg)", re.S)
_IDS = re.compile(r'(\bid="|url\(#|href="#)')


def _svg(fig, key: str) -> str:
    plt = pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(fig)
    text = _HEADER.sub("", buf.getvalue(), count=1)
    return _IDS.sub(lambda m: m.group(1) + f"{key}-", text)


def _new(width: float, height: float):
    plt = pyplot()
    if plt is None:
        return None, None
    plt.rcParams["svg.hashsalt"] = "wastenet-report"
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable
    return plt.subplots(figsize=(width, height))


def params_scatter(points: list[dict], key: str = "fig-8") -> str | None:
    """Figure 8: top-1 on TrashNet's test split against parameters (millions); points are
    ``{label, params, acc (fraction), ours, star}``."""
    fig, ax = _new(7.5, 4.6)
    if fig is None:
        return None
    for p in points:
        colour = STAR_COLOUR if p.get("star") else OURS_COLOUR if p["ours"] else PAPER_COLOUR
        ax.scatter(
            p["params"] / 1e6,
            100 * p["acc"],
            s=180 if p.get("star") else 50,
            marker="*" if p.get("star") else ("o" if p["ours"] else "s"),
            color=colour,
            zorder=3,
        )
        ax.annotate(
            p["label"],
            (p["params"] / 1e6, 100 * p["acc"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=7,
        )
    ax.scatter([], [], marker="s", color=PAPER_COLOUR, label="the paper (table 4)")
    ax.scatter([], [], marker="o", color=OURS_COLOUR, label="this project")
    ax.scatter([], [], marker="*", s=120, color=STAR_COLOUR, label="the shipped model")
    ax.set_xlabel("parameters (millions)")
    ax.set_ylabel("top-1 on TrashNet's test split (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _svg(fig, key)


def hbars(
    labels: list[str],
    values: list[float],
    xlabel: str,
    key: str,
    colours: list[str] | None = None,
    fmt: str = "{:.1f}",
    legend: dict[str, str] | None = None,
) -> str | None:
    """Horizontal bars, one per label, the value written at each bar's end."""
    fig, ax = _new(7.5, 0.42 * len(labels) + 1.2)
    if fig is None:
        return None
    y = list(range(len(labels)))[::-1]
    bars = ax.barh(y, values, color=colours or OURS_COLOUR, height=0.65)
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=3, fontsize=8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_xlim(0, max(values) * 1.18 if values and max(values) > 0 else 1)
    ax.grid(axis="x", alpha=0.3)
    if legend:
        rect = pyplot().Rectangle
        handles = [rect((0, 0), 1, 1, color=colour, label=name) for name, colour in legend.items()]
        ax.legend(
            handles=handles,
            fontsize=8,
            loc="lower left",
            bbox_to_anchor=(0, 1.0),
            ncol=len(handles),
            frameon=False,
        )
    return _svg(fig, key)


def grouped_bars(
    categories: list[str], series: dict[str, list[float | None]], ylabel: str, key: str
) -> str | None:
    """Figure 12: per category (a test split), one bar per series (a model)."""
    fig, ax = _new(max(6.0, 1.6 * len(categories) * max(1, len(series)) / 3 + 3), 4.2)
    if fig is None:
        return None
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        kept = [(x, 100 * v) for x, v in zip(xs, values, strict=True) if v is not None]
        if kept:
            bars = ax.bar([k[0] for k in kept], [k[1] for k in kept], width * 0.95, label=name)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 110)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    return _svg(fig, key)


def count_bars(names: list[str], totals: list[int], correct: list[int], key: str) -> str | None:
    """Figures 10/13: grey bars = items shown, blue bars = items classified right."""
    fig, ax = _new(6.5, 3.6)
    if fig is None:
        return None
    x = list(range(len(names)))
    ax.bar(x, totals, color="0.8", width=0.7, label="items")
    bars = ax.bar(x, correct, color=OURS_COLOUR, width=0.5, label="correct")
    ax.bar_label(
        bars,
        labels=[f"{c}/{t}" for c, t in zip(correct, totals, strict=True)],
        fontsize=7,
        padding=2,
    )
    ax.set_xticks(x, names)
    ax.set_ylabel("items")
    ax.legend(fontsize=8)
    return _svg(fig, key)


def latency_curves(
    ns: list[int],
    curves: dict[str, list[float]],
    points: list[tuple[float, float, str]],
    key: str = "fig-eq2",
) -> str | None:
    """Equation 2, T_total(N), one line per IPS; measured bin runs as points on top."""
    fig, ax = _new(7.5, 4.4)
    if fig is None:
        return None
    for name, values in curves.items():
        ax.plot(ns, values, label=name)
    for i, (n, total, label) in enumerate(points):
        ax.scatter(
            [n],
            [total],
            marker="x",
            s=70,
            color="black",
            zorder=4,
            label="measured bin runs" if i == 0 else None,
        )
        ax.annotate(label, (n, total), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax.set_xlabel("vote window N (frames)")
    ax.set_ylabel("item shown to door moving, T_total (s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig, key)
