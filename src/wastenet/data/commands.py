"""``wastenet data ...``: split, check, cache, preview."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from wastenet.classes import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_RESOLUTION_PCT,
    FULL_RESOLUTION_HW,
    size_text,
)
from wastenet.errors import WasteNetError

DEFAULT_SIZE = f"{DEFAULT_RESOLUTION_PCT:g}%"  # the shipped model's input size
SIZE_HELP = (
    f"HEIGHTxWIDTH, or a resolution PCT%% of {size_text(FULL_RESOLUTION_HW)} like a preset's "
    "resolution_pct "
    f"(default {DEFAULT_RESOLUTION_PCT:g}%%: {size_text(DEFAULT_INPUT_SIZE)})"
)

SPLIT_EPILOG = """examples:
  wastenet data split ../shared/data/trashnet ../shared/data/web-mixed --out runs/data
  wastenet data split sources/web.yaml --out runs/web --seed 1 --folds 5 --ratios 0.72 0.18 0.10

A SOURCE is an image folder (<root>/<class>/*; paper_and_cardboard -> {paper, cardboard},
trash -> out-of-distribution) or a source YAML:
  name: web-mixed
  root: ../shared/data/web-mixed     # relative to the YAML
  folders: {glass: glass, paper_and_cardboard: [paper, cardboard], junk: ignore, trash: ood}
or a detection source YAML (YOLO layout: <root>/<subset>/images + labels, data.yaml): each
box becomes one item, cropped with a margin into <out>/crops/<name>/:
  name: trashnetpp
  type: detection
  root: trashnetpp/yolo
  classes: {Can: metal, Glass: glass, Plastics: plastic, Cable: ood, Metal: ignore}
  crop: {margin: 0.15, min_side: 32}
"""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    data = subparsers.add_parser(
        "data",
        help="index sources, validate files, split, cache, preview augmentation",
        description="The data stage: sources -> validated, de-duplicated split manifest.",
        formatter_class=formatter_class,
        epilog="example:\n  wastenet data split ../shared/data/trashnet --out runs/data",
    )
    sub = data.add_subparsers(dest="data_command", metavar="ACTION")
    data.set_defaults(func=lambda args: (data.print_help(), 0)[1])

    p = sub.add_parser(
        "split",
        help="validate sources and write a stratified split manifest",
        description="Validate every file, find near-duplicates (flip/rotation aware), and "
        "write manifest.json, validation.json/.txt and duplicates.json to --out.",
        formatter_class=formatter_class,
        epilog=SPLIT_EPILOG,
    )
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="image folder or source YAML")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (same seed, same split)")
    p.add_argument("--folds", type=int, default=5, help="k-fold assignment on train+val (0: none)")
    p.add_argument(
        "--ratios",
        type=float,
        nargs=3,
        default=[0.72, 0.18, 0.10],
        metavar=("TRAIN", "VAL", "TEST"),
        help="split ratios within each stratum",
    )
    p.add_argument(
        "--dup-threshold",
        type=int,
        default=6,
        help="near-duplicate Hamming distance (bits of a 64-bit phash)",
    )
    p.add_argument(
        "--keep-splits-from",
        type=Path,
        default=None,
        metavar="MANIFEST",
        help="files of this earlier manifest keep their split and fold (add a source "
        "without moving any existing test image into training)",
    )
    p.add_argument("--workers", type=int, default=2, help="validation processes")
    p.set_defaults(func=cmd_split)

    p = sub.add_parser(
        "check",
        help="report manifest files that changed or vanished",
        description="Re-hash every file of a manifest; exit 1 if any changed or vanished.",
        formatter_class=formatter_class,
        epilog="example:\n  wastenet data check runs/data/manifest.json",
    )
    p.add_argument("manifest", type=Path, help="manifest.json (or its folder)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "cache",
        help="pre-build the decoded image cache of a manifest",
        description="Decode, fit and store every manifest image (incl. ood) as one uint8 "
        "memmap in the cache folder ($WASTENET_CACHE or ~/.cache/wastenet).",
        formatter_class=formatter_class,
        epilog="examples:\n  wastenet data cache runs/data/manifest.json\n"
        "  wastenet data cache runs/data/manifest.json --size 50%",
    )
    p.add_argument("manifest", type=Path, help="manifest.json (or its folder)")
    p.add_argument("--size", default=DEFAULT_SIZE, help="the model input: " + SIZE_HELP)
    p.add_argument("--cache-dir", type=Path, default=None, help="cache folder")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser(
        "backgrounds",
        help="cut real backgrounds (the box-free part of each photo) from a detection source",
        description="For each labelled photo of a detection source, write its largest region "
        "that touches no box (a real floor, table or shelf) as a JPEG: backgrounds to paste "
        "studio objects onto in training (augment background_dir).",
        formatter_class=formatter_class,
        epilog="example:\n  wastenet data backgrounds sources/trashnetpp.yaml --out runs/bg/trashnetpp",
    )
    p.add_argument("source", type=Path, help="detection source YAML")
    p.add_argument("--out", type=Path, required=True, help="folder to write the JPEGs to")
    p.add_argument(
        "--min-share",
        type=float,
        default=0.35,
        help="each side of a region must be at least this share of the photo's",
    )
    p.set_defaults(func=cmd_backgrounds)

    p = sub.add_parser(
        "preview",
        help="save a grid of augmented samples (like the paper's figure 11)",
        description="Tile augmented training samples into one PNG to eyeball an augmentation.",
        formatter_class=formatter_class,
        epilog="examples:\n  wastenet data preview runs/data/manifest.json --out grid.png --zoom 1.0\n"
        "  wastenet data preview ../shared/data/trashnet --out ours.png --preset ours --n 25",
    )
    p.add_argument("input", type=Path, help="manifest.json or an image folder")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--preset", default="table3", help="table1 | table3 | ours | none")
    p.add_argument("--zoom", type=float, default=None, help="override the zoom range x")
    p.add_argument("--n", type=int, default=16, help="number of samples")
    p.add_argument("--size", default=DEFAULT_SIZE, help=SIZE_HELP)
    p.add_argument("--seed", type=int, default=0, help="sample and augmentation seed")
    p.add_argument(
        "--masks",
        action="store_true",
        help="show the object masks of the background swap over green (dimmed: no clean mask)",
    )
    p.set_defaults(func=cmd_preview)


def _check_existing(out: Path, new) -> None:
    """Before overwriting a manifest, say what changed on disk since it was written."""
    from wastenet.data.manifest import check_files, load_manifest

    old_path = out / "manifest.json"
    if not old_path.is_file():
        return
    try:
        old = load_manifest(old_path)
    except WasteNetError as exc:
        print(f"note: previous manifest unreadable ({exc}); replacing it", file=sys.stderr)
        return
    found = check_files(old)
    for kind in ("vanished", "changed"):
        for path in found[kind]:
            print(f"{kind} since the previous manifest: {path}")
    same = "unchanged" if old.hash == new.hash else f"changed ({old.hash[:12]} -> {new.hash[:12]})"
    print(
        f"previous manifest: {len(found['vanished'])} vanished, {len(found['changed'])} "
        f"changed files; split {same}"
    )


def check_out_folder(out: Path) -> None:
    """``--out`` must be a folder, or one that can be made: checked before any work."""
    if out.exists() and not out.is_dir():
        raise WasteNetError(f"--out {out}: exists and is not a folder (give a folder path)")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise WasteNetError(f"--out {out}: {parent} is a file, so the folder cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise WasteNetError(f"--out {out}: {parent} is not writable")


def cmd_split(args) -> int:
    from wastenet.data.manifest import load_manifest
    from wastenet.data.split import build_split, count_table, format_table
    from wastenet.data.validate import report_text, write_report

    check_out_folder(args.out)
    previous = load_manifest(args.keep_splits_from) if args.keep_splits_from else None

    result = build_split(
        args.sources,
        seed=args.seed,
        folds=args.folds,
        ratios=args.ratios,
        threshold=args.dup_threshold,
        workers=args.workers,
        progress=sys.stderr.isatty(),
        crops_dir=args.out / "crops",
        keep_splits_from=previous,
    )
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    _check_existing(out, result.manifest)
    extra = {k: v for k, v in result.validation.items() if k != "checks"}
    report = write_report(result.validation["checks"], extra, out)
    (out / "duplicates.json").write_text(json.dumps(result.duplicates, indent=1))
    result.manifest.save(out / "manifest.json")
    rows = count_table(result.manifest)
    (out / "summary.md").write_text(format_table(rows) + "\n")
    dup = result.duplicates
    print(report_text(report), end="")
    print(
        f"near-duplicates (<= {dup['threshold_bits']} bits): {dup['pairs']} pairs, "
        f"{len(dup['groups_within_source'])} groups within a source, "
        f"{len(dup['groups_across_sources'])} across sources, "
        f"{len(dup['groups_across_splits'])} across splits"
    )
    print(format_table(rows))
    info = result.manifest.info
    print(
        f"manifest {out / 'manifest.json'} hash {result.manifest.hash[:16]} "
        f"({info['seconds_total']:.1f} s, validation {info['seconds_validate']:.1f} s)"
    )
    if info.get("train_only_dropped"):
        print(
            f"left out: {info['train_only_dropped']} items of a train-only source, each a "
            "near-duplicate of an item kept in val or test (it may not be trained on)"
        )
    return 0


def cmd_check(args) -> int:
    from wastenet.data.manifest import check_files, load_manifest

    manifest = load_manifest(args.manifest)
    found = check_files(manifest)
    for kind in ("vanished", "changed"):
        for path in found[kind]:
            print(f"{kind}: {path}")
    total = len(manifest.all_items) + len(manifest.ood)
    print(f"{total} files: {len(found['vanished'])} vanished, {len(found['changed'])} changed")
    return 1 if found["vanished"] or found["changed"] else 0


def cmd_cache(args) -> int:
    from wastenet.data.cache import ImageCache, parse_size
    from wastenet.data.manifest import check_files, load_manifest

    manifest = load_manifest(args.manifest)
    found = check_files(manifest)
    if found["vanished"] or found["changed"]:
        raise WasteNetError(
            f"{args.manifest}: {len(found['vanished'])} files vanished and "
            f"{len(found['changed'])} changed since the split; re-run 'wastenet data split'"
        )
    items = manifest.items() + manifest.items(split="ood")
    size_hw = parse_size(args.size)
    cache = ImageCache(items, size_hw, args.cache_dir, workers=args.workers)
    where = f"{size_text(size_hw)} in {cache.path}"
    print(f"{len(cache)} images at {where} ({cache.nbytes / 1e9:.2f} GB)")
    return 0


def cmd_backgrounds(args) -> int:
    from wastenet.data.detection import write_backgrounds
    from wastenet.data.sources import load_source

    source = load_source(args.source)
    if source.kind != "detection":
        raise WasteNetError(
            f"{args.source}: backgrounds come from a detection source (type: detection)"
        )
    if not 0.05 <= args.min_share <= 1.0:
        raise WasteNetError(f"--min-share must be in [0.05, 1], not {args.min_share}")
    done = write_backgrounds(
        source.root, source.names, args.out, args.min_share, progress=sys.stderr.isatty()
    )
    print(
        f"{done['written']} backgrounds from {done['photos']} photos written to {done['out']} "
        f"({done['skipped']} photos had no free region of {args.min_share:.0%} of each side)"
    )
    for line in done["too_large"]:
        print(f"skipped {line}")
    return 0


def cmd_preview(args) -> int:
    from wastenet.data.cache import parse_size
    from wastenet.data.preview import preview

    path = preview(
        args.input,
        args.out,
        preset=args.preset,
        zoom=args.zoom,
        n=args.n,
        size_hw=parse_size(args.size),
        seed=args.seed,
        masks=args.masks,
    )
    print(f"wrote {path}")
    return 0
