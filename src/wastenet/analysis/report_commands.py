"""``wastenet report``: the paper's tables and figures from this project's JSON results."""

from __future__ import annotations

import argparse

EPILOG = """examples:
  wastenet report --out runs/report
  wastenet report --out runs/report --results runs/eval runs/bench runs/bin/20250101-120000
  wastenet report --out runs/report --benchmarks-md BENCHMARKS.md
  wastenet report --out runs/report --no-defaults --results runs/power

Reads benchmarks/results/*.json and the bundled model's evaluation and training logs,
plus every result under each --results folder: wastenet evaluate's report.json, verify
and bench JSON, a bin run folder (run.json), power JSON (power parse/protocol/rapl
--json), shift.json, realworld.json, training runs (config.yaml + metrics.csv).
Writes report.html (self-contained: figures inline, nothing fetched), report.md and
figures/*.svg. Each number cites its input's command, date and machine; a number no
input holds reads 'not measured yet'. Without matplotlib: tables only, with a note."""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    p = subparsers.add_parser(
        "report",
        help="HTML and Markdown report of every result: the paper's tables 4-7, figures 8-15",
        description="One page with the paper's tables 4-7, figures 8, 9, 10/13, 12, 14, 15 "
        "and equation 2, each from this project's own results.",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    p.add_argument("--out", required=True, help="folder for report.html, report.md, figures/")
    p.add_argument(
        "--results",
        nargs="+",
        default=[],
        metavar="DIR",
        help="more result folders or JSON files to read (searched recursively)",
    )
    p.add_argument(
        "--no-defaults",
        action="store_true",
        help="read only --results, not benchmarks/results nor the bundled model",
    )
    p.add_argument(
        "--benchmarks-md",
        metavar="PATH",
        help="also write the user's benchmarks page (BENCHMARKS.md) from the committed results",
    )
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from wastenet.analysis import report_benchmarks, report_inputs, report_render

    inputs = report_inputs.collect(args.results, defaults=not args.no_defaults)
    report = report_render.build(inputs)
    paths = report_render.write(report, args.out)
    print(f"{len(inputs.sources)} results read ({len(inputs.ignored)} other JSON files skipped)")
    if not report.plots:
        print("matplotlib is not installed: tables only")
    print(f"report: {paths['html']} and {paths['md']}")
    if args.benchmarks_md:
        if args.no_defaults:
            print("note: --benchmarks-md with --no-defaults renders only the --results given")
        print(f"benchmarks page: {report_benchmarks.write(inputs, args.benchmarks_md)}")
    return 0
