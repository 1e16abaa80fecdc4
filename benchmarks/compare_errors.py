"""Which test items do several models get wrong, and would averaging them help?

Run: python benchmarks/compare_errors.py A.xml B.safetensors [C ...] --manifest runs/data/manifest.json
For each split and source (exactly-labelled items): top-1 of each model and of the mean
of all their probabilities, how many items are wrong in k of the N models, and every
item at least one model gets wrong with the models that do (file names). Writes
results/compare_errors.json. An upper-bound probe for distillation, a bigger model or
more seeds: items every model gets wrong are the hard ones (or doubtful labels), and
averaging cannot fix them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results" / "compare_errors.json"


def committee(probs: list[np.ndarray], truth: np.ndarray, names: list[str]) -> dict:
    """Per-model and mean-of-all top-1 and errors, the wrong-in-k-of-N histogram, who errs where.

    ``probs``: one (items, classes) array per model; ``truth``: class index per item;
    ``names``: one label per item (a file name).
    """
    n = len(probs)
    wrong = np.stack([p.argmax(1) != truth for p in probs])  # models x items
    mean_wrong = (sum(probs) / n).argmax(1) != truth
    counts = wrong.sum(0)
    return {
        "items": int(len(truth)),
        "top1": [float(1 - w.mean()) for w in wrong],
        "top1_mean_of_all": float(1 - mean_wrong.mean()),
        "wrong": [int(w.sum()) for w in wrong],
        "wrong_mean_of_all": sorted(names[i] for i in np.flatnonzero(mean_wrong)),
        "wrong_in_k_of_n": {str(k): int((counts == k).sum()) for k in range(1, n + 1)},
        "wrong_by": {
            names[i]: np.flatnonzero(wrong[:, i]).tolist()
            for i in sorted(np.flatnonzero(counts), key=lambda i: (-counts[i], names[i]))
        },
    }


def main() -> None:
    from wastenet.classes import CLASSES
    from wastenet.evaluate.dataset import load_manifest
    from wastenet.evaluate.predict import open_engine, predict_items

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="two or more bundles or exported artifacts")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    if len(args.models) < 2:
        raise SystemExit("give two or more models to compare")
    manifest = load_manifest(args.manifest)
    engines = [open_engine(m) for m in args.models]
    if len({tuple(e.meta.input_size) for e in engines}) != 1:
        raise SystemExit("the models must take the same input size")
    result: dict = {"models": args.models, "splits": {}}
    for split in args.splits:
        loaded: dict = {}  # decoded once, shared by the engines
        runs = [predict_items(e, manifest.items(split=split), loaded=loaded) for e in engines]
        items, probs = runs[0].items, [r.probs for r in runs]
        per_source = {}
        for source in sorted({it.source for it in items}):
            idx = np.array(
                [i for i, it in enumerate(items) if it.source == source and len(it.labels) == 1]
            )
            if not len(idx):
                continue
            truth = np.array([CLASSES.index(items[i].labels[0]) for i in idx])
            names = [Path(items[i].path).name for i in idx]
            row = committee([p[idx] for p in probs], truth, names)
            per_source[source] = row
            each = " ".join(f"{t:.1%}" for t in row["top1"])
            print(f"{split:5s} {source:10s} n={row['items']:4d}  models {each}  "
                  f"mean {row['top1_mean_of_all']:.1%}  wrong in k of {len(probs)}: "
                  f"{row['wrong_in_k_of_n']}")  # fmt: skip
        result["splits"][split] = per_source
    result["provenance"] = provenance()
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
