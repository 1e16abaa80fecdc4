"""``wastenet shift``: leave-one-source-out training and scoring (see evaluate/shift.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wastenet.errors import ConfigError

EPILOG = """examples:
  wastenet shift lite0_mixed_75 --manifest runs/data/manifest.json --out runs/shift/lite0_50 \\
      --resolution 50
  wastenet shift lite0_mixed_75 lite0_mixed_75_stage2 lite0_mixed_75_stage3 \\
      --manifest runs/data/manifest.json --out runs/shift/shipped --holdout-only phone
  wastenet shift lite0_mixed_75 --manifest M --out runs/shift/lite0_50 --skip-train --threshold 0.6
  wastenet shift --model src/wastenet/assets/model/model.safetensors --trained-on trashnet web-mixed \\
      --manifest runs/data/manifest.json --out runs/shift/shipped_model
  wastenet shift lite0_multisource_75 lite0_multisource_75_stage2 lite0_multisource_75_stage3 \\
      lite0_multisource_75_stage4 --manifest runs/data4/manifest.json --holdout-only muell \\
      --out runs/shift/multisource --teachers-from runs/shift/previous_recipe

For each source S (of the manifest, or --sources), RECIPE trains on every other source
into OUT/without-S/stageK/ and the model scores ALL of S's items (it never saw S):
set-aware top-1 with a Wilson interval, exact top-1, per-class recall, confusion, and
'not sure' rates on S, on S's out-of-distribution items and on the training sources'
test items. Several RECIPEs chain: stage k+1 starts from stage k's model of the same
fold. A phase that trains only on the left-out source is dropped (and recorded), as is
outlier exposure or distillation that draws only on it. A recipe that distils from a fixed
model leaks the left-out source if that model saw it: --teachers-from takes each fold's
teacher from an earlier LOSO run's model of the same fold instead. --fold-model S=MODEL
scores MODEL as the fold without S (a release already trained on the other sources).
--folds S... runs only the folds leaving out those sources (a long run a fold at a time).
A fold with a finished model is not retrained; an interrupted one resumes: rerun the
same command. Writes OUT/shift.json (after every fold) and OUT/shift.md.
--model scores an existing bundle: every source not in --trained-on counts as unseen."""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    p = subparsers.add_parser(
        "shift",
        help="leave-one-source-out: accuracy on a source the model never saw",
        description="Domain-shift evaluation: train a recipe without each source in turn "
        "and score it on that source (or score an existing bundle on unseen sources).",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    p.add_argument("recipes", nargs="*", metavar="RECIPE", help="preset name or YAML (chained)")
    p.add_argument("--manifest", type=Path, required=True, help="split manifest")
    p.add_argument("--out", type=Path, required=True, help="output folder (folds, shift.json/md)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--sources", nargs="+", metavar="S", help="take part (default: all)")
    p.add_argument(
        "--folds",
        nargs="+",
        metavar="S",
        help="run only the folds leaving out these sources (default: one per source)",
    )
    p.add_argument(
        "--holdout-only", nargs="+", default=[], metavar="S", help="never trained on; scored"
    )
    p.add_argument("--resolution", type=float, metavar="PCT", help="every phase at PCT %%")
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="the sureness below which the bin says 'not sure' (default: each model card's)",
    )
    p.add_argument(
        "--teachers-from",
        type=Path,
        metavar="DIR",
        help="an earlier LOSO's output (or its shift.json): each fold distils from that run's "
        "model of the same fold (a recipe's fixed teacher may have seen the left-out source)",
    )
    p.add_argument(
        "--fold-model",
        nargs="+",
        default=[],
        metavar="S=MODEL",
        help="score MODEL as the fold without S instead of training it (a model already "
        "trained on the other sources, such as a previous release)",
    )
    p.add_argument("--skip-train", action="store_true", help="only score finished models")
    p.add_argument("--model", type=Path, help="score this existing bundle instead of training")
    p.add_argument("--trained-on", nargs="+", default=None, metavar="S", help="with --model")
    p.add_argument("--cache-dir", type=Path, help="decoded image cache (default: the recipe's)")
    p.add_argument("--device", default=None, help="device for --model (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_shift)


def _load_recipes(names: list[str], pairs: list[str], manifest: Path) -> tuple[list, dict]:
    from wastenet.train.config import load_train_config, parse_overrides

    overrides = parse_overrides(pairs)
    for key, instead in (("manifest", "--manifest"), ("sources", "--sources/--holdout-only")):
        if key in overrides:
            raise ConfigError(f"--set {key}=... is not for shift; use {instead}")
    # the manifest as given, like --out: relative paths keep machine paths out of results
    full = dict(overrides, manifest=str(manifest.expanduser()))
    return [(name, load_train_config(name, full)) for name in names], overrides


def _fold_models(pairs: list[str]) -> dict[str, str]:
    models: dict[str, str] = {}
    for pair in pairs:
        source, sep, model = pair.partition("=")
        if not sep or not source or not model:
            raise ConfigError(f"--fold-model takes SOURCE=MODEL, not {pair!r}")
        if source in models:
            raise ConfigError(f"--fold-model: {source} given twice")
        models[source] = model
    return models


def cmd_shift(args: argparse.Namespace) -> int:
    from wastenet.evaluate import shift
    from wastenet.evaluate.shift_plan import check_resolution

    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.model is not None:
        training_only = {
            "RECIPE": args.recipes, "--set": args.set, "--resolution": args.resolution is not None,
            "--teachers-from": args.teachers_from, "--fold-model": args.fold_model,
            "--skip-train": args.skip_train,
        }  # fmt: skip
        used = [option for option, given in training_only.items() if given]
        if used:
            raise ConfigError(f"--model scores an existing bundle: drop {', '.join(used)}")
        if not args.trained_on:
            raise ConfigError("--model needs --trained-on (the sources the bundle saw)")
        if args.sources or args.folds:
            raise ConfigError(
                "--model scores every source outside --trained-on; drop --sources and --folds"
            )
        result = shift.score_existing(
            args.model, args.trained_on, args.manifest, args.out, args.holdout_only,
            args.threshold, args.cache_dir, args.device,
        )  # fmt: skip
    else:
        if args.trained_on:
            raise ConfigError("--trained-on goes with --model")
        if not args.recipes:
            raise ConfigError("name a RECIPE (preset or YAML) or pass --model")
        check_resolution(args.resolution)
        recipes, overrides = _load_recipes(args.recipes, args.set, args.manifest)
        try:
            result = shift.run_shift(
                recipes, args.manifest, args.out.expanduser(), args.sources,
                args.holdout_only, args.resolution, args.threshold, args.skip_train,
                overrides, args.cache_dir, progress=not args.no_progress, log=log,
                teachers_from=args.teachers_from, fold_models=_fold_models(args.fold_model),
                folds=args.folds,
            )  # fmt: skip
        except KeyboardInterrupt:
            log(
                f"stopped; rerun the same command to resume (finished folds: {args.out}/shift.json)"
            )
            return 130
    from wastenet.evaluate.shift_report import holdout_table, main_table

    print("\n".join(main_table(result) + holdout_table(result)))
    print(f"report: {args.out / 'shift.md'}")
    return 0
