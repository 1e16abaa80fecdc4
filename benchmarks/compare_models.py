"""Two models on the same items, paired: the in-distribution guard-rail for a new default.

Run: python benchmarks/compare_models.py OLD.onnx NEW.onnx --manifest runs/data/manifest.json \
         --split val test --sources trashnet web-mixed [--name shipped_vs_multisource]

Pools the given splits of the given sources (val + test: twice the evidence of test
alone), scores both engines with the one scorer (set-aware top-1), and reports each
model's accuracy with its Wilson interval, per source and pooled, the difference and
the exact McNemar p-value of the items only one of them got right; the sources' OOD
items (never trained on) give each model's "not sure" rate at its card's threshold,
next to its refusals on the scored items. Writes
results/compare_models_<name>.json with the command, date and machine.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from split_noise import mcnemar_exact  # benchmarks/ is the script's folder
from wastenet.accelerate import load_engine
from wastenet.data.manifest import load_manifest
from wastenet.evaluate.metrics import wilson_interval
from wastenet.evaluate.predict import predict_items
from wastenet.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results"


def paired(hits_a: np.ndarray, hits_b: np.ndarray) -> dict:
    n = len(hits_a)
    a_only, b_only = int((hits_a & ~hits_b).sum()), int((hits_b & ~hits_a).sum())
    row = {"n": n, "difference_points": 100.0 * (hits_b.mean() - hits_a.mean())}
    for key, hits in (("old", hits_a), ("new", hits_b)):
        low, high = wilson_interval(int(hits.sum()), n)
        row[key] = {"accuracy": 100.0 * hits.mean(), "ci95": [100.0 * low, 100.0 * high]}
    row.update(old_only=a_only, new_only=b_only, mcnemar_p=mcnemar_exact(a_only, b_only))
    return row


def compare(old: Path, new: Path, manifest: Path, splits: list[str], sources: list[str] | None,
            cache_dir: str | None = None) -> dict:  # fmt: skip
    m = load_manifest(manifest)
    wanted = set(sources or m.source_names)
    items = [it for s in splits for it in m.items(split=s) if it.source in wanted]
    ood = [it for it in m.items(split="ood") if it.source in wanted]  # never trained on
    hits, not_sure = {}, {}
    for key, path in (("old", old), ("new", new)):
        with load_engine(path) as engine:
            pred = predict_items(engine, items, cache_dir=cache_dir)
            if pred.skipped:
                raise SystemExit(f"{pred.skipped[0]['path']}: {pred.skipped[0]['reason']}")
            hits[key] = pred.score()
            if ood:
                top = predict_items(engine, ood, cache_dir=cache_dir).probs.max(1)
                not_sure[key] = {
                    "threshold": engine.meta.not_sure_below,
                    "ood_not_sure": 100.0 * float((top < engine.meta.not_sure_below).mean()),
                    "refusals": 100.0
                    * float((pred.probs.max(1) < engine.meta.not_sure_below).mean()),
                }
    source_of = np.array([it.source for it in items])
    out = {
        "old": str(old), "new": str(new), "splits": splits, "sources": sorted(wanted),
        "pooled": paired(hits["old"].hits, hits["new"].hits),
        "per_source": {
            s: paired(hits["old"].hits[source_of == s], hits["new"].hits[source_of == s])
            for s in sorted(set(source_of))
        },
        "ood_items": len(ood),
        "not_sure": not_sure,
    }  # fmt: skip
    return out


def table(result: dict) -> str:
    lines = [
        "| items | n | old top-1 % (95 % CI) | new top-1 % (95 % CI) | new - old | "
        "old only | new only | McNemar p |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [*result["per_source"].items(), ("pooled", result["pooled"])]
    for name, r in rows:
        o, n = r["old"], r["new"]
        lines.append(
            f"| {name} | {r['n']} | {o['accuracy']:.1f} ({o['ci95'][0]:.1f}-{o['ci95'][1]:.1f}) | "
            f"{n['accuracy']:.1f} ({n['ci95'][0]:.1f}-{n['ci95'][1]:.1f}) | "
            f"{r['difference_points']:+.1f} | {r['old_only']} | {r['new_only']} | "
            f"{r['mcnemar_p']:.3g} |"
        )
    for key, ns in result["not_sure"].items():
        lines.append(
            f"\n{key}: 'not sure' below {ns['threshold']:.2f} on {ns['ood_not_sure']:.1f} % of "
            f"{result['ood_items']} OOD items, {ns['refusals']:.1f} % refusals on the items above"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", nargs="+", default=["val", "test"])
    parser.add_argument("--sources", nargs="+")
    parser.add_argument("--cache-dir", help="the data stage's decoded-image cache")
    parser.add_argument("--name", default="old_vs_new")
    args = parser.parse_args()
    result = compare(args.old, args.new, args.manifest, args.split, args.sources, args.cache_dir)
    result["provenance"] = provenance()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"compare_models_{args.name}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
