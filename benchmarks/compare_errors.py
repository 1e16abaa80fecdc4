"""Which test items do two models get wrong, and would averaging them help?

Run: python benchmarks/compare_errors.py A.xml B.xml --manifest runs/data/manifest.json
For each split and source: top-1 (exactly-labelled items) of each model and of the mean
of their probabilities, the errors each makes and the ones they share (file names).
Writes results/compare_errors.json. An upper-bound probe for distillation or a bigger
model: errors both models share are the hard ones (or doubtful labels).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "compare_errors.json"


def main() -> None:
    from wastenet.classes import CLASSES
    from wastenet.evaluate.dataset import load_images, load_manifest
    from wastenet.evaluate.predictor import load_predictor, predict_images

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2)
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--splits", nargs="+", default=["val", "test"])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    manifest = load_manifest(args.manifest)
    engines = [load_predictor(m) for m in args.models]
    if engines[0].meta.input_size != engines[1].meta.input_size:
        raise SystemExit("the two models must take the same input size")
    size = (engines[0].meta.height, engines[0].meta.width)
    result: dict = {"models": args.models, "splits": {}}
    for split in args.splits:
        images, items, _ = load_images(manifest.items(split=split), size)
        probs = [predict_images(e, images) for e in engines]
        per_source = {}
        for source in sorted({it.source for it in items}):
            idx = np.array(
                [i for i, it in enumerate(items) if it.source == source and len(it.labels) == 1]
            )
            if not len(idx):
                continue
            truth = np.array([CLASSES.index(items[i].labels[0]) for i in idx])
            wrong = [set(idx[p[idx].argmax(1) != truth].tolist()) for p in probs]
            mean = (probs[0] + probs[1]) / 2
            per_source[source] = {
                "items": len(idx),
                "top1_a": float((probs[0][idx].argmax(1) == truth).mean()),
                "top1_b": float((probs[1][idx].argmax(1) == truth).mean()),
                "top1_mean_of_both": float((mean[idx].argmax(1) == truth).mean()),
                "wrong_a": len(wrong[0]),
                "wrong_b": len(wrong[1]),
                "wrong_both": sorted(Path(items[i].path).name for i in wrong[0] & wrong[1]),
            }
            row = per_source[source]
            print(f"{split:5s} {source:10s} n={row['items']:4d}  A {row['top1_a']:.1%}  "
                  f"B {row['top1_b']:.1%}  mean {row['top1_mean_of_both']:.1%}  "
                  f"wrong A {row['wrong_a']} B {row['wrong_b']} both {len(row['wrong_both'])}")  # fmt: skip
        result["splits"][split] = per_source
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
