"""Which "not sure" rule should a model card carry? Every candidate sureness on the same
predictions, with what it costs the bundled samples.

Run: python benchmarks/sureness_sweep.py MODEL... --manifest runs/data4/manifest.json \
         --in-distribution trashnet web-mixed [--name shipped]

Each model predicts once: the val + test items of the ``--in-distribution`` sources (the
refusals), the manifest's out-of-distribution items never trained on (as
``compare_models.py``) and the bundled sample photos (read whole, each at the model's
input size; the README's main job replays the same photos). For every rule of
``--rules`` (``wastenet.sureness``: top_probability or certainty, @T re-tempered) it
reports the AUROC and the OOD "not sure" rate at the bar that refuses 5 % of the
in-distribution items, how many samples that bar still sorts, and the highest bar that
sorts every sample (with its refusals and OOD rate): where a card's bar can sit without
the main job saying "not sure". Writes results/sureness_sweep_<name>.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from compare_models import (  # benchmarks/ is the script's folder
    ood_separation,
    rule_for,
    write_result,
)
from wastenet.accelerate import load_engine
from wastenet.data.manifest import load_manifest
from wastenet.evaluate.predict import predict_images, predict_items
from wastenet.imageio import read_rgb
from wastenet.preprocess import fit_image
from wastenet.provenance import provenance
from wastenet.runtime.app import DEFAULT_SAMPLES
from wastenet.sureness import NotSureRule, parse_rule

RULES = ("top_probability", "top_probability@1", "top_probability@2", "top_probability@5",
         "certainty@1", "certainty@2", "certainty@3")  # fmt: skip


def sample_photos(folder: Path) -> tuple[list[np.ndarray], list[str]]:
    """The sample photos and their classes (the file name up to ``_``)."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [read_rgb(p) for p in paths], [p.stem.split("_")[0] for p in paths]


def sweep_model(path: Path, manifest, in_distribution: list[str], rules: list[str],
                samples: tuple[list[np.ndarray], list[str]], refusals: float) -> dict:  # fmt: skip
    m = manifest
    known = [it for s in ("val", "test") for it in m.items(split=s) if it.source in in_distribution]
    ood = m.ood_items(training=False)
    with load_engine(path) as engine:
        meta = engine.meta
        probs_in = predict_items(engine, known).probs
        probs_ood = predict_items(engine, ood).probs
        photos = np.stack([fit_image(p, (meta.height, meta.width)) for p in samples[0]])
        probs_samples = predict_images(engine, photos)
    predicted = [meta.labels[i] for i in probs_samples.argmax(1)]
    right = np.array([p == c for p, c in zip(predicted, samples[1], strict=True)])
    ood_sources = np.array([it.source for it in ood])
    rows = {}
    for text in rules:
        rule = rule_for(meta, text)  # the bar is set below, per measure
        s_in, s_ood = rule.sureness(probs_in), rule.sureness(probs_ood)
        s_samples = rule.sureness(probs_samples)
        sep = ood_separation(s_in, s_ood, ood_sources, refusals)
        top_bar = float(s_samples[right].min()) if right.all() else None
        rows[text] = {
            "auroc": sep["auroc"],
            "bar_at_refusals": sep["threshold"],
            "ood_not_sure_at_refusals": sep["ood_not_sure"],
            "samples_sorted_at_refusals": int((right & (s_samples >= sep["threshold"])).sum()),
            # the highest bar at which every sample is still sorted (None: one is wrong)
            "samples_bar": top_bar,
            "refusals_at_samples_bar": None if top_bar is None
            else 100.0 * float((s_in < top_bar).mean()),
            "ood_not_sure_at_samples_bar": None if top_bar is None
            else 100.0 * float((s_ood < top_bar).mean()),
        }  # fmt: skip
    return {"model": str(path), "card": NotSureRule.of(meta).describe(),
            "in_distribution_items": len(known), "ood_items": len(ood),
            "samples": len(right), "samples_right": int(right.sum()), "rules": rows}  # fmt: skip


def table(result: dict) -> str:
    pct = "{:.1f}".format
    lines = [
        f"'not sure' at {100 * result['refusals']:.0f} % refusals on "
        f"{' + '.join(result['in_distribution'])} val + test; samples: the bundled photos",
        "",
        "| model | sureness | AUROC | OOD not sure at 5 % | samples sorted | "
        "highest bar sorting all | refusals there | OOD not sure there |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in result["models"]:
        name = model["model"]
        for rule, r in model["rules"].items():
            bar = r["samples_bar"]
            lines.append(
                f"| {name} | {rule} | {r['auroc']:.3f} | {pct(r['ood_not_sure_at_refusals'])} % "
                f"| {r['samples_sorted_at_refusals']}/{model['samples']} | "
                + (
                    "- | - | - |"
                    if bar is None
                    else f"{bar:.3f} | {pct(r['refusals_at_samples_bar'])} % | "
                    f"{pct(r['ood_not_sure_at_samples_bar'])} % |"
                )  # fmt: skip
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--in-distribution", nargs="+", required=True, metavar="SOURCE",
                        help="the sources whose val + test items the refusals count on")  # fmt: skip
    parser.add_argument("--rules", nargs="+", default=list(RULES), metavar="SCORE[@T]")
    parser.add_argument("--refusals", type=float, default=0.05)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--name", default="sweep")
    args = parser.parse_args()
    for text in args.rules:
        parse_rule(text)  # a typo fails before any model runs
    manifest = load_manifest(args.manifest)
    samples = sample_photos(args.samples)
    result = {
        "in_distribution": args.in_distribution, "refusals": args.refusals,
        "models": [sweep_model(p, manifest, args.in_distribution, args.rules, samples,
                               args.refusals) for p in args.models],
        "provenance": provenance(),
    }  # fmt: skip
    write_result(result, f"sureness_sweep_{args.name}", table(result))


if __name__ == "__main__":
    main()
