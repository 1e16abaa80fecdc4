"""How many labelled photos from a new place does a bin need? A learning curve.

A model trained without a source (a leave-one-source-out fold of ``wastenet shift``)
sorts that source's real photos about half right. The bin's way out is its own loop:
store what it sees, label some of it, retrain. This measures that loop on a source the
model never saw: fine-tune the fold's model on the source's training items from ``k``
randomly drawn photos (every crop of a photo goes with it; a larger ``k`` holds a
smaller one's photos), with a replayed share of the sources it was trained on, and
score the source's val + test items, which no run touches (they are dropped from the
fine-tuning manifest: best epoch and temperature come from the old sources' val
items). Also scored: the old sources' test items, to see what the fine-tune forgets.
``--reference`` scores a model trained on every photo of the source (the shipped one) on
the same items: the curve's end point. ``--pseudo-labels 0.9`` adds self-training points:
every training photo of the source (its outliers too, as a bin's photos would hold them),
labelled by the model itself where it is that sure, fine-tuned on alike. Each point's
scores are kept in OUT/scores/, so a rerun scores only what changed.

    python benchmarks/new_place_curve.py \\
        --model runs/shift/multisource_without-trashnetpp/without-trashnetpp/stage4/model.safetensors \\
        --manifest runs/data4/manifest.json --source trashnetpp --photos 25 100 400

Writes OUT/new_place_curve.json (the runs are OUT/photosK/) and prints a table;
``--results`` also copies the JSON (benchmarks/results/new_place_curve.json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from wastenet.data.manifest import Manifest, load_manifest
from wastenet.errors import WasteNetError
from wastenet.evaluate.shift import train_stage
from wastenet.evaluate.shift_plan import artifact_meta
from wastenet.provenance import provenance
from wastenet.train.finetune import fine_tune_config


def photo_of(item) -> str:
    """The photo an item was cut from (a detection source's crop), else the item itself."""
    return (item.origin or {}).get("photo") or item.path


def photo_order(manifest: Manifest, source: str, seed: int) -> list[str]:
    """The source's training photos in a seeded random order: the first k are drawn."""
    photos = sorted({photo_of(it) for it in manifest.items(split="train", source=source)})
    if not photos:
        raise WasteNetError(f"the manifest has no training items of source {source!r}")
    return [photos[i] for i in np.random.default_rng(seed).permutation(len(photos))]


def new_place_manifest(manifest: Manifest, source: str, photos: set[str]) -> Manifest:
    """The manifest with only ``photos``' training items of ``source`` and none of its val
    or test items; every other source's items and every outlier as they were."""
    items = [
        it
        for it in manifest.all_items
        if it.source != source or (it.split == "train" and photo_of(it) in photos)
    ]
    return Manifest(
        items, manifest.ood, manifest.seed, manifest.folds, manifest.ratios,
        manifest.sources, {**manifest.info, "new_place": {"source": source, "photos": len(photos)}},
    )  # fmt: skip


_GUESSES: dict[tuple, list] = {}  # one prediction pass per model and source in a run


def model_guesses(manifest: Manifest, source: str, model: Path, cache_dir) -> list[tuple]:
    """``(item, the model's top class, its sureness)`` for the source's training items and
    its train-split outliers, predicted once per run."""
    from wastenet.evaluate.predict import open_engine, predict_items
    from wastenet.sureness import NotSureRule

    key = (str(model), source, manifest.hash)
    if key not in _GUESSES:
        pool = manifest.items(split="train", source=source)
        pool += [it for it in manifest.ood if it.source == source and it.for_outlier_exposure]
        engine = open_engine(model)
        pred = predict_items(engine, pool, cache_dir=cache_dir)
        sureness = NotSureRule.of(engine.meta).sureness(pred.probs)
        labels = [engine.meta.labels[i] for i in pred.probs.argmax(1)]
        _GUESSES[key] = list(zip(pred.items, labels, sureness.tolist(), strict=True))
    return _GUESSES[key]


def pseudo_labelled(
    manifest: Manifest,
    source: str,
    model: Path,
    threshold: float,
    cache_dir,
    shuffle_seed: int | None = None,
) -> tuple[Manifest, dict]:
    """Self-training: the manifest with ``source``'s training photos labelled by ``model``
    instead of a person. Every training item of the source, and its outliers in the train
    split (a bin's unlabelled photos hold both), takes the model's top class where the
    card's sureness is at least ``threshold``; the rest are dropped, as are the source's
    val and test items. Also returns how many were kept, and how many of their labels are
    right (outliers are never right). ``shuffle_seed``: the control, the same items with
    their labels shuffled among them (the same classes, in the same numbers)."""
    from dataclasses import replace

    guesses = model_guesses(manifest, source, model, cache_dir)
    chosen = [(it, label) for it, label, sure in guesses if sure >= threshold]
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(chosen))
        chosen = [(it, chosen[j][1]) for (it, _), j in zip(chosen, order, strict=True)]
    pseudo = [replace(it, labels=(label,), split="train", ood_split=None) for it, label in chosen]
    taken = {it.sha256 for it, _ in chosen}
    items = [it for it in manifest.all_items if it.source != source] + pseudo
    ood = [it for it in manifest.ood if not (it.source == source and it.sha256 in taken)]
    info = {**manifest.info, "new_place": {"source": source, "pseudo_labels": threshold}}
    derived = Manifest(
        items, ood, manifest.seed, manifest.folds, manifest.ratios, manifest.sources, info
    )
    stats = {
        "threshold": threshold,
        "shuffled": shuffle_seed is not None,
        "pool": len(guesses),
        "pool_outliers": sum(1 for it, _, _ in guesses if it.split == "ood"),
        "kept": len(chosen),
        "kept_outliers": sum(1 for it, _ in chosen if it.split == "ood"),
        "right": sum(1 for it, label in chosen if it.labels == (label,)),
    }
    return derived, stats


def sources_of(model: Path, source: str, given: list[str] | None) -> list[str]:
    """The sources ``model`` was trained on (its card's, or ``given``), never ``source``."""
    trained_on = given or artifact_meta(model).trained_sources
    if not trained_on:
        raise WasteNetError(f"{model}: its card does not name its sources; pass --trained-on")
    if source in trained_on:
        raise WasteNetError(f"{model} was trained on {source}: it is no new place for it")
    return list(trained_on)


def check_reference(model: Path, source: str) -> None:
    """A reference must have trained on every photo of ``source`` (the full recipe)."""
    trained_on = artifact_meta(model).trained_sources
    if trained_on is not None and source not in trained_on:
        raise WasteNetError(f"{model} was not trained on {source}: it is no reference for it")


def point_config(model: Path, manifest: Path, source: str, trained_on: list[str], args):
    """``wastenet finetune``'s recipe (``wastenet.train.finetune``) on ``source``; best
    epoch and temperature come from the old sources' val items (the manifest holds no
    others)."""
    return fine_tune_config(
        model, manifest, [source], trained_on, epochs=args.epochs, lr=args.lr,
        replay=args.replay, max_steps=args.max_steps, cache_dir=args.cache_dir,
        keep_what_it_knows=False,
    )  # fmt: skip


def scores_key(model: Path, groups: dict[str, list]) -> dict:
    """What a point's scores depend on: the model file and the items of each group."""
    from wastenet.meta import file_sha256

    digest = hashlib.sha256()
    for name, items in sorted(groups.items()):
        digest.update(name.encode())
        for it in items:
            digest.update(f"\0{it.sha256}".encode())
    return {"model_sha256": file_sha256(model), "items_sha256": digest.hexdigest()}


def score_once(model: Path, groups: dict[str, list], cache_dir, saved: Path) -> dict:
    """``score``, kept in ``saved`` and read back while the model and items are the same,
    so a rerun (another k, a reference) does not score the finished points again."""
    key = scores_key(model, groups)
    if saved.is_file():
        kept = json.loads(saved.read_text())
        if kept.get("key") == key:
            return kept["scores"]
    scores = score(model, groups, cache_dir)
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"key": key, "scores": scores}, indent=1))
    return scores


def score(model: Path, groups: dict[str, list], cache_dir) -> dict:
    """Each group of items as ``wastenet shift`` scores a left-out source (set-aware top-1
    with its Wilson interval, per-class recall, "not sure" under the model card's rule)."""
    from wastenet.evaluate.predict import open_engine, predict_items
    from wastenet.evaluate.shift_report import source_scores
    from wastenet.sureness import NotSureRule

    engine = open_engine(model)
    rule = NotSureRule.of(engine.meta)
    out = {}
    for name, items in groups.items():
        pred = predict_items(engine, items, cache_dir=cache_dir)
        s = source_scores(pred.probs, pred.label_sets, rule)
        out[name] = {
            "n": s["n"],
            "top1": s["top1_set"],
            "top1_ci95": s["top1_set_ci95"],
            "recall": s["recall"],
            "not_sure": s["not_sure"]["not_sure_rate"],
            "skipped": len(pred.skipped),
        }
    return out


def run(args) -> dict:
    model, out = Path(args.model), Path(args.out)
    manifest = load_manifest(args.manifest)
    unseen = [it for it in manifest.all_items if it.source == args.source and it.split != "train"]
    order = photo_order(manifest, args.source, args.seed)
    trained_on = sources_of(model, args.source, args.trained_on)
    old_test = [it for it in manifest.items(split="test") if it.source in trained_on]
    groups = {g: v for g, v in {"new_place": unseen, "old_sources_test": old_test}.items() if v}
    if args.reference:
        check_reference(Path(args.reference), args.source)
    cache = args.cache_dir
    out.mkdir(parents=True, exist_ok=True)
    points = []
    for k in sorted(set([0, *args.photos])):
        if k > len(order):
            print(f"skipping {k} photos: {args.source} has {len(order)} training photos")
            continue
        if k == 0:
            trained, seconds, items = model, None, 0
        else:
            folder = out / f"photos{k}"
            folder.mkdir(parents=True, exist_ok=True)
            derived = new_place_manifest(manifest, args.source, set(order[:k]))
            items = len(derived.items(split="train", source=args.source))
            derived_path = derived.save(folder / "manifest.json")
            cfg = point_config(model, derived_path, args.source, trained_on, args)
            status = train_stage(cfg, folder / "run", skip_train=False, progress=False)
            seconds = status["train_seconds"]  # a reused run's own, as it was timed
            trained = folder / "run" / "model.safetensors"
        point = {
            "photos": k,
            "items": items,
            "train_seconds": seconds,
            "model": str(trained),
            "old_sources_test": None,
            **score_once(trained, groups, cache, out / "scores" / f"photos{k}.json"),
        }
        points.append(point)
        print(row(point), flush=True)
    controls = [False, True] if args.shuffled_control else [False]
    for threshold, control in [(t, c) for t in args.pseudo_labels or [] for c in controls]:
        # every photo, labelled by the model itself (control: those labels shuffled)
        name = f"pseudo{threshold:g}" + ("-shuffled" if control else "")
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        derived, stats = pseudo_labelled(
            manifest, args.source, model, threshold, cache, args.seed if control else None
        )
        cfg = point_config(model, derived.save(folder / "manifest.json"), args.source,
                               trained_on, args)  # fmt: skip
        status = train_stage(cfg, folder / "run", skip_train=False, progress=False)
        trained = folder / "run" / "model.safetensors"
        point = {
            "photos": len(order),
            "items": stats["kept"],
            "pseudo_labels": stats,
            "train_seconds": status["train_seconds"],
            "model": str(trained),
            "old_sources_test": None,
            **score_once(trained, groups, cache, out / "scores" / f"{name}.json"),
        }
        points.append(point)
        what = "labels shuffled" if control else "unlabelled"
        print(row(point, f"all, {what} (sureness >= {threshold:g})"), flush=True)
    reference = None
    if args.reference:  # every training photo, the full recipe from ImageNet weights
        reference = {
            "photos": len(order),
            "items": len(manifest.items(split="train", source=args.source)),
            "train_seconds": None,
            "model": str(args.reference),
            "old_sources_test": None,
            **score_once(Path(args.reference), groups, cache, out / "scores" / "reference.json"),
        }
        print(row(reference, "all, full recipe"), flush=True)
    return {
        "model": str(model),
        "manifest": str(args.manifest),
        "source": args.source,
        "scored_on": f"{args.source}'s val and test items ({len(unseen)}), never trained on",
        "photos_available": len(order),
        "settings": {
            "epochs": args.epochs,
            "lr": args.lr,
            "replay": args.replay,
            "seed": args.seed,
        },
        "points": points,
        "reference": reference,
        "provenance": provenance(),
    }


def pct(x) -> str:
    return "–" if x is None else f"{100 * x:.1f} %"


HEADER = (
    "| labelled photos | items | top-1 on the new place (95 % CI) | per class | "
    "old sources' test | train s |\n| ---: | ---: | ---: | --- | ---: | ---: |"
)


def row(p: dict, photos: str | None = None) -> str:
    s, old = p["new_place"], p["old_sources_test"]
    lo, hi = s["top1_ci95"]
    recall = ", ".join(f"{c} {pct(v)}" for c, v in s["recall"].items())
    seconds = "–" if p["train_seconds"] is None else f"{p['train_seconds']:.0f}"
    top1 = f"{pct(s['top1'])} ({100 * lo:.1f}-{100 * hi:.1f})"
    return (
        f"| {photos or p['photos']} | {p['items']} | {top1} | "
        f"{recall} | {pct(old['top1']) if old else '–'} | {seconds} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a bundle trained without --source")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--source", required=True, help="the new place: a source the model never saw")
    ap.add_argument("--photos", type=int, nargs="+", default=[25, 100, 400])
    ap.add_argument(
        "--trained-on", nargs="+", help="the model's sources, where its card lacks them"
    )
    ap.add_argument("--epochs", type=int, default=3, help="main epochs (then one FixRes epoch)")
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--replay", type=float, default=0.1, help="old sources' share an epoch")
    ap.add_argument(
        "--pseudo-labels",
        type=float,
        nargs="+",
        metavar="SURENESS",
        help="also self-train: every training photo, labelled by the model where it is this sure",
    )
    ap.add_argument(
        "--shuffled-control",
        action="store_true",
        help="with --pseudo-labels: also the same items with their labels shuffled",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default="runs/new_place")
    ap.add_argument("--results", default=None, help="also copy the JSON here")
    ap.add_argument(
        "--reference",
        default=None,
        help="a model trained on every photo of --source (the shipped one), scored alike",
    )
    args = ap.parse_args(argv)
    print(HEADER)
    try:
        result = run(args)
    except WasteNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(result, indent=1)
    (Path(args.out) / "new_place_curve.json").write_text(text)
    if args.results:
        Path(args.results).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
