"""Leave-one-source-out before and after: two `wastenet shift` results, fold by fold.

Run: python benchmarks/compare_shift.py --before A.json [B.json ...] --after C.json [...] --name NAME
Each side is one recipe's shift.json, or several holding its folds (a long run made a fold
at a time with `wastenet shift --folds`); both sides must score the same items (the same
manifest and left-out sources). What is compared, and the issue's targets, are in
``wastenet.evaluate.shift_compare``. Writes results/compare_shift_NAME.json (which
`wastenet report` shows in BENCHMARKS.md when the recipe after is the shipped one) and
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from wastenet.evaluate.shift_compare import compare, markdown, merge
from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, nargs="+", required=True, help="shift.json(s)")
    parser.add_argument("--after", type=Path, nargs="+", required=True, help="shift.json(s)")
    parser.add_argument("--name", required=True, help="results/compare_shift_NAME.json")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    try:
        before, after = (
            merge([json.loads(p.read_text()) for p in paths]) for paths in (args.before, args.after)
        )
        cmp = compare(before, after)
    except (OSError, ValueError, KeyError) as exc:
        print(f"compare_shift: {exc}", file=sys.stderr)
        return 2
    described = {
        key: {
            "results": [str(p) for p in paths],
            "recipes": res.get("recipes"),
            "resolution_pct": res.get("resolution_pct"),
        }
        for key, paths, res in (("before", args.before, before), ("after", args.after, after))
    }
    out = {"provenance": provenance(), **described, **cmp}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"compare_shift_{args.name}.json"
    path.write_text(json.dumps(out, indent=2))
    print(markdown(cmp))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
