"""``wastenet evaluate MODEL --manifest M`` and ``wastenet evaluate realworld CSV``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wastenet.errors import WasteNetError

EPILOG = """examples:
  wastenet evaluate runs/b0/best.safetensors --manifest runs/data/manifest.json --out runs/b0/eval
  wastenet evaluate runs/b0/b0_fp16.onnx --manifest runs/data/manifest.json --no-robustness
  wastenet evaluate runs/b0/best.safetensors --manifest runs/data/manifest.json --limit 20
  wastenet evaluate realworld realworld.csv --out runs/b0/realworld

MODEL is a .safetensors bundle (run with torch) or any exported artifact
(.onnx, OpenVINO folder, TensorRT engine: run through its accelerate backend).
Writes report.json, report.md, confusion_<source>.png and, with --robustness,
robustness.png and robustness_preview.png.

realworld CSV: one row per item shown to the bin, header item,true,predicted,error
(error: the identified cause of a wrong answer, e.g. glare or zoom; empty if none).
Writes realworld.json, realworld.md and realworld.png (table 6, figures 10/13).
"""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a model on the test split (+ robustness), or summarise a real-world test",
        description="Top-1 per source, per-class precision/recall/F1, confusion matrices, "
        "'not sure' rates, out-of-distribution AUROC and a corruption robustness suite; "
        "or, with 'realworld CSV', the paper's real-world protocol.",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    p.add_argument("model", metavar="MODEL", help="model bundle or artifact, or 'realworld'")
    p.add_argument("csv", nargs="?", type=Path, metavar="CSV", help="outcomes CSV (realworld)")
    p.add_argument("--manifest", type=Path, help="split manifest (wastenet data split)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"))
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: eval_<model name> beside the model)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="top probability below which the bin says 'not sure' (default: the model card's)",
    )
    p.add_argument(
        "--robustness",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the corruption suite (about 1 + corruptions x severities passes)",
    )
    p.add_argument(
        "--severities",
        type=int,
        nargs="+",
        default=[1, 3, 5],
        choices=range(1, 6),
        metavar="S",
        help="corruption severities (1-5)",
    )
    p.add_argument(
        "--corruptions",
        nargs="+",
        default=None,
        metavar="NAME",
        help="subset of corruptions (default: all)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N items per source")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default=None, help="torch device or engine device (default: auto)")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="use the data stage's decoded image cache in this folder",
    )
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    if args.model == "realworld":
        return _realworld(args)
    if args.csv is not None:
        raise WasteNetError(f"unexpected argument {args.csv}; did you mean 'evaluate realworld'?")
    if args.manifest is None:
        raise WasteNetError("--manifest is required to evaluate a model")
    from wastenet.evaluate.corruptions import CORRUPTIONS
    from wastenet.evaluate.dataset import load_manifest
    from wastenet.evaluate.predict import open_engine
    from wastenet.evaluate.report import evaluate_model
    from wastenet.sureness import NotSureRule

    corruptions = args.corruptions or list(CORRUPTIONS)
    unknown = [c for c in corruptions if c not in CORRUPTIONS]
    if unknown:
        raise WasteNetError(
            f"unknown corruption(s) {', '.join(unknown)}; known: {', '.join(CORRUPTIONS)}"
        )
    if args.limit is not None and args.limit < 1:
        raise WasteNetError("--limit must be at least 1")
    model = Path(args.model)
    manifest = load_manifest(args.manifest)
    engine = open_engine(model, device=args.device)
    out = args.out or model.parent / f"eval_{model.stem}"
    report = evaluate_model(
        engine,
        manifest,
        split=args.split,
        threshold=NotSureRule.of(engine.meta, args.threshold),
        robustness=args.robustness,
        severities=args.severities,
        corruptions=corruptions,
        limit=args.limit,
        out_dir=out,
        model_path=model,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        log=lambda msg: print(msg, file=sys.stderr, flush=True),
    )
    print(summary_text(report, out))
    return 0


def summary_text(report: dict, out: Path) -> str:
    """A few lines for the terminal; the full tables are in report.md."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    def interval(bounds):
        return "" if bounds is None else f" ({pct(bounds[0])}-{pct(bounds[1])})"

    lines = []
    for source, g in report["per_source"].items():
        lines.append(
            f"{source:>16}: top-1 {pct(g['top1'])}{interval(g['top1_ci95'])}  "
            f"set {pct(g['set_accuracy'])}  "
            f"coarse {pct(g['coarse_accuracy'])}  (n={g['n']})"
        )
    ns, ood = report["overall"]["not_sure"], report["ood"]
    lines.append(
        f"{'not sure':>16}: {pct(ns['not_sure_rate'])} of test items, "
        f"{pct(ood['not_sure_rate'])} of OOD items; accuracy when confident "
        f"{pct(ns['accuracy_confident'])}; OOD AUROC "
        + ("-" if ood["auroc"] is None else f"{ood['auroc']:.3f}")
    )
    rob = report.get("robustness")
    if rob:
        lines.append(
            f"{'robustness':>16}: mean corruption accuracy "
            f"{pct(rob['mean_corruption_accuracy'])} ({pct(rob['relative_to_clean'])} "
            "of clean)"
        )
    lines.append(f"report: {out / 'report.md'}")
    return "\n".join(lines)


def _realworld(args: argparse.Namespace) -> int:
    from wastenet.evaluate.realworld import evaluate_realworld

    if args.csv is None:
        raise WasteNetError("usage: wastenet evaluate realworld CSV [--out DIR]")
    out = args.out or args.csv.parent / f"{args.csv.stem}_report"
    s = evaluate_realworld(args.csv, out)
    print(
        f"{s['n']} items: accuracy including errors {100 * s['accuracy_including_errors']:.1f}%, "
        f"excluding errors {100 * s['accuracy_excluding_errors']:.1f}%"
    )
    print(f"report: {out / 'realworld.md'}")
    return 0
