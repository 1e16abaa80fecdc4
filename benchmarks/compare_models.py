"""Two models on the same items, paired: the in-distribution guard-rail for a new default.

Run: python benchmarks/compare_models.py OLD.onnx NEW.onnx --manifest runs/data/manifest.json \
         --split val test --sources trashnet web-mixed [--name shipped_vs_multisource]

Pools the given splits of the given sources (val + test: twice the evidence of test
alone), scores both engines with the one scorer (set-aware top-1), and reports each
model's accuracy with its Wilson interval, per source and pooled, the difference and
the exact McNemar p-value of the items only one of them got right; the sources' OOD
items outside the train split's photo groups (never trained on, even by outlier
exposure) give each model's "not sure" rate under its card's rule (``wastenet.sureness``),
next to its refusals on the scored items. With ``--in-distribution SOURCE ...`` (the
sources both models trained on) it also measures how well each model's sureness
separates OOD items from those sources' items, whatever the threshold: the AUROC, and
the OOD "not sure" rate at the threshold that refuses 5 % of them. ``--sureness
certainty@2`` measures that separation with another sureness than the cards' (the
cards' bars mean nothing on it, so their "not sure" rates are left out). Writes
results/compare_models_<name>.json with the command, date and machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np

from wastenet.accelerate import load_engine
from wastenet.data.manifest import load_manifest
from wastenet.evaluate.metrics import auroc
from wastenet.evaluate.model_gate import paired
from wastenet.evaluate.predict import predict_items
from wastenet.provenance import provenance
from wastenet.sureness import DEFAULT_REFUSALS, NotSureRule, parse_rule, refusal_bar

RESULTS = Path(__file__).resolve().parent / "results"


def ood_separation(top_in: np.ndarray, top_ood: np.ndarray, ood_sources: np.ndarray,
                   refusals: float = DEFAULT_REFUSALS) -> dict:  # fmt: skip
    """How well a sureness tells OOD items from in-distribution ones, whatever the
    threshold: AUROC, and the OOD "not sure" rate at the threshold that refuses
    ``refusals`` of the in-distribution items (the issue's 5 %), per OOD source."""
    threshold = refusal_bar(top_in, refusals)
    flagged = top_ood < threshold
    return {
        "auroc": auroc(1.0 - top_ood, 1.0 - top_in),
        "refusals": refusals,
        "threshold": threshold,
        "ood_not_sure": 100.0 * float(flagged.mean()),
        "per_source": {
            s: {"n": int((ood_sources == s).sum()),
                "ood_not_sure": 100.0 * float(flagged[ood_sources == s].mean())}
            for s in sorted(set(ood_sources))
        },
    }  # fmt: skip


def rule_for(meta, sureness: str | None) -> NotSureRule:
    """The card's "not sure" rule, or its bar with another sureness (``certainty@2``)."""
    rule = NotSureRule.of(meta)
    if sureness is None:
        return rule
    score, temperature = parse_rule(sureness)
    return dataclasses.replace(rule, score=score, temperature=temperature)


def compare(old: Path, new: Path, manifest: Path, splits: list[str], sources: list[str] | None,
            cache_dir: str | None = None, in_distribution: list[str] | None = None,
            sureness: str | None = None) -> dict:  # fmt: skip
    m = load_manifest(manifest)
    wanted = set(sources or m.source_names)
    items = [it for s in splits for it in m.items(split=s) if it.source in wanted]
    ood = [it for it in m.ood_items(training=False) if it.source in wanted]  # never trained on
    ood_sources = np.array([it.source for it in ood])
    trained_by_both = set(in_distribution or ())
    inside = np.array([it.source in trained_by_both for it in items])
    hits, not_sure, separation = {}, {}, {}
    for key, path in (("old", old), ("new", new)):
        with load_engine(path) as engine:
            pred = predict_items(engine, items, cache_dir=cache_dir)
            if pred.skipped:
                raise SystemExit(f"{pred.skipped[0]['path']}: {pred.skipped[0]['reason']}")
            hits[key] = pred.score()
            if ood:
                rule = rule_for(engine.meta, sureness)
                sure_ood = rule.sureness(predict_items(engine, ood, cache_dir=cache_dir).probs)
                sure_in = rule.sureness(pred.probs)
                if sureness is None:  # the card's bar means nothing on another sureness
                    not_sure[key] = {
                        "rule": rule.describe(),
                        "threshold": rule.threshold,
                        "ood_not_sure": 100.0 * float((sure_ood < rule.threshold).mean()),
                        "refusals": 100.0 * float((sure_in < rule.threshold).mean()),
                    }
                if inside.any():
                    separation[key] = ood_separation(sure_in[inside], sure_ood, ood_sources)
    source_of = np.array([it.source for it in items])
    out = {
        "old": str(old), "new": str(new), "splits": splits, "sources": sorted(wanted),
        "pooled": paired(hits["old"].hits, hits["new"].hits),
        # the guard-rail: the items of the sources both models trained on, pooled
        "in_distribution_pooled": (
            paired(hits["old"].hits[inside], hits["new"].hits[inside]) if inside.any() else None
        ),
        "per_source": {
            s: paired(hits["old"].hits[source_of == s], hits["new"].hits[source_of == s])
            for s in sorted(set(source_of))
        },
        "ood_items": len(ood),
        "not_sure": not_sure,
        "in_distribution": sorted(in_distribution or ()),
        "sureness": sureness,
        "ood_separation": separation,
    }  # fmt: skip
    return out


def table(result: dict) -> str:
    lines = [
        "| items | n | old top-1 % (95 % CI) | new top-1 % (95 % CI) | new - old | "
        "old only | new only | McNemar p |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    rows = [*result["per_source"].items(), ("pooled", result["pooled"])]
    if result.get("in_distribution_pooled"):
        rows.append((f"pooled {' + '.join(result['in_distribution'])}",
                     result["in_distribution_pooled"]))  # fmt: skip
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
            f"\n{key}: 'not sure' ({ns.get('rule', ns['threshold'])}) on {ns['ood_not_sure']:.1f} % of "
            f"{result['ood_items']} OOD items, {ns['refusals']:.1f} % refusals on the items above"
        )
    for key, sep in result.get("ood_separation", {}).items():
        per = ", ".join(
            f"{s} {v['ood_not_sure']:.1f} % of {v['n']}" for s, v in sep["per_source"].items()
        )
        by = result.get("sureness") or "its card's sureness"
        lines.append(
            f"\n{key}: OOD AUROC {sep['auroc']:.3f} ({by}); at {100 * sep['refusals']:.0f} % "
            "refusals on "
            f"{' + '.join(result['in_distribution'])} (threshold {sep['threshold']:.2f}) "
            f"'not sure' on {sep['ood_not_sure']:.1f} % of OOD items ({per})"
        )
    return "\n".join(lines)


def write_result(result: dict, stem: str, text: str) -> Path:
    """results/<stem>.json, and ``text`` (the result's table) on stdout."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    print(f"\nwritten: {out}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--split", nargs="+", default=["val", "test"])
    parser.add_argument("--sources", nargs="+")
    parser.add_argument("--cache-dir", help="the data stage's decoded-image cache")
    parser.add_argument("--name", default="old_vs_new")
    parser.add_argument(
        "--in-distribution",
        nargs="+",
        metavar="SOURCE",
        help="sources both models trained on: the OOD threshold is set to refuse 5 %% of "
        "their items (the issue's target), and the AUROC is against them",
    )
    parser.add_argument(
        "--sureness",
        metavar="SCORE[@T]",
        help="measure the OOD separation with this sureness instead of the cards' "
        "(top_probability, certainty; @T re-tempers: certainty@2)",
    )
    args = parser.parse_args()
    result = compare(args.old, args.new, args.manifest, args.split, args.sources, args.cache_dir,
                     args.in_distribution, args.sureness)  # fmt: skip
    result["provenance"] = provenance()
    write_result(result, f"compare_models_{args.name}", table(result))


if __name__ == "__main__":
    main()
