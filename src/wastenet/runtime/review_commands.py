"""``wastenet samples``: review a bin's sample store (``wastenet.runtime.review``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers, formatter_class) -> None:
    samples = subparsers.add_parser(
        "samples",
        help="review what the bin kept: label its samples, its accuracy on them, export them",
        description="Review a sample store (`wastenet run --store DIR`): write a sheet to "
        "label, store the labels, see the bin's accuracy on them, and export the labelled "
        "samples as a source for `wastenet data split`. Review a copy of a running bin's "
        "store: the store admits one process at a time.",
        formatter_class=formatter_class,
        epilog="examples:\n"
        "  wastenet samples sheet samples/              # samples/review/labels.csv + index.html\n"
        "  wastenet samples label samples/ samples/review/labels.csv\n"
        "  wastenet samples summary samples/\n"
        "  wastenet samples export samples/ --out data/bin-kitchen\n"
        "  wastenet samples export samples/ --self-label 0.9 --out data/bin-kitchen-self\n"
        "  wastenet data split ../data/trashnet data/bin-kitchen/source.yaml \\\n"
        "      data/bin-kitchen-self/source.yaml \\\n"
        "      --keep-splits-from runs/data/manifest.json --out runs/data-kitchen",
    )
    sub = samples.add_subparsers(dest="samples_command", metavar="STEP", required=True)

    sheet = sub.add_parser("sheet", help="a sheet (CSV) and a page of images to label")
    sheet.add_argument("store", help="the sample store folder")
    sheet.add_argument("--out", type=Path, help="folder for labels.csv and index.html "
                       "(default: STORE/review)")  # fmt: skip
    sheet.add_argument("--unreviewed", action="store_true", help="only samples with no label")
    sheet.add_argument("--force", action="store_true", help="replace an existing labels.csv")
    sheet.set_defaults(func=_sheet)

    label = sub.add_parser("label", help="store the labels of a filled-in sheet (all or none)")
    label.add_argument("store", help="the sample store folder")
    label.add_argument("sheet", help="the filled-in labels.csv")
    label.set_defaults(func=_label)

    summary = sub.add_parser("summary", help="labels so far, the bin's accuracy on them")
    summary.add_argument("store", help="the sample store folder")
    summary.set_defaults(func=_summary)

    export = sub.add_parser("export", help="the labelled samples as a folder source")
    export.add_argument("store", help="the sample store folder")
    export.add_argument(
        "--out", type=Path, required=True, help="a new folder, or an earlier export"
    )
    export.add_argument("--name", help="the source's name (default: bin-<store folder>)")
    export.add_argument(
        "--self-label",
        type=float,
        metavar="SURENESS",
        help="instead export the samples nobody reviewed that the bin was at least this "
        "sure of, labelled with its own answers, as a train-only source (self-training: "
        "0.9 gave +8 points on a new place, see the model README)",
    )
    export.set_defaults(func=_export)


def _sheet(args: argparse.Namespace) -> int:
    from wastenet.runtime.review import open_store, write_sheet

    with open_store(args.store) as store:
        sheet, page, n = write_sheet(
            store, args.out or store.root / "review", args.unreviewed, args.force
        )
    print(f"{n} samples: fill in the label column of {sheet} (images: {page}), then run "
          f"`wastenet samples label {args.store} {sheet}`")  # fmt: skip
    return 0


def _label(args: argparse.Namespace) -> int:
    from wastenet.runtime.review import open_store, read_sheet, summarise, summary_text

    labels = read_sheet(args.sheet)  # the whole sheet is checked before the store is opened
    with open_store(args.store) as store:
        store.set_labels(labels)
        rows = store.rows()
    given = sum(label is not None for label in labels.values())
    print(f"stored {given} labels from {len(labels)} rows")
    print(summary_text(store.root, summarise(rows)))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from wastenet.runtime.review import open_store, summarise, summary_text

    with open_store(args.store) as store:
        rows = store.rows()
    print(summary_text(store.root, summarise(rows)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from wastenet.runtime.review import export, open_store

    with open_store(args.store) as store:
        counts = export(store, args.out, args.name, args.self_label)
    total = sum(counts.values())
    shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    what = "samples" if args.self_label is None else "samples labelled by the bin itself"
    print(
        f"exported {total} {what} to {args.out} ({shown}); its source: {args.out / 'source.yaml'}"
        + (" (train-only)" if args.self_label is not None else "")
    )
    return 0
