"""``wastenet gate OLD NEW --manifest M``: may a bin take the new model
(``wastenet.evaluate.model_gate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EPILOG = """examples:
  wastenet gate src/wastenet/assets/model/wastenet-lite0.onnx runs/kitchen/model.onnx \\
      --manifest runs/data5/manifest.json --out runs/kitchen/gate.json
  wastenet gate old.onnx new.safetensors --manifest runs/data5/manifest.json --tolerance 2 --strict

Scores both models on val + test of every source in the manifest, and on the outliers no
model was trained on, item by item. A row is worse when the new model loses more than
--tolerance points and McNemar's exact test says the loss is beyond noise (p < --alpha);
--strict fails on a loss beyond the tolerance within noise too. Exit 0 when the gate
passes, 5 when a row is worse, 2 on bad input. --out writes the verdict as JSON with
both models' SHA-256 and the manifest's hash.
"""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    from wastenet.evaluate.model_gate import DEFAULT_ALPHA, DEFAULT_TOLERANCE

    p = subparsers.add_parser(
        "gate",
        help="may a bin take a new model: no regression on any held-out source",
        description="Compare a new model with the one in service on every held-out "
        "source and on the outliers, paired item by item; pass or fail.",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    p.add_argument("old", type=Path, help="the model in service (bundle or artifact)")
    p.add_argument("new", type=Path, help="the candidate")
    p.add_argument("--manifest", type=Path, required=True, help="split manifest")
    p.add_argument("--split", nargs="+", default=["val", "test"], choices=("val", "test"))
    p.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="points the new model may lose on a row (default: %(default)g)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="McNemar p-value under which a loss is beyond noise (default: %(default)g)",
    )
    p.add_argument("--strict", action="store_true", help="fail on a loss within noise too")
    p.add_argument("--out", type=Path, help="write the verdict here as JSON")
    p.add_argument("--cache-dir", type=Path, default=None, help="the data stage's image cache")
    p.set_defaults(func=_gate)


def _gate(args: argparse.Namespace) -> int:
    from wastenet.errors import ExitCode
    from wastenet.evaluate.model_gate import gate, gate_table
    from wastenet.provenance import provenance

    result = gate(
        args.old, args.new, args.manifest, args.split,
        args.tolerance, args.alpha, args.strict, args.cache_dir,
    )  # fmt: skip
    print(gate_table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**result, "provenance": provenance()}, indent=2) + "\n")
        print(f"written: {args.out}")
    return ExitCode.OK if result["passed"] else ExitCode.CHECK_FAILED
