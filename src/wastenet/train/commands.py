"""`wastenet train`, `wastenet lr-find` and `wastenet calibrate` (the build steps of a model)."""

from __future__ import annotations

EPILOG_TRAIN = """examples:
  wastenet train lite0_mixed_75 --set manifest=runs/data/manifest.json --out runs/lite0
  wastenet train runs/lite0/config.yaml --out runs/lite0 --resume
  wastenet train --list
  torchrun --nproc-per-node 2 -m wastenet.cli train efficientnet_b0_mixed_75 \
    --set manifest=runs/data/manifest.json --out runs/ddp

Ctrl-C stops after the current step and saves a resumable checkpoint."""

EPILOG_FINETUNE = """examples:
  wastenet finetune runs/lite0/model.safetensors --manifest runs/data5/manifest.json \
      --add bin-kitchen bin-kitchen-self --out runs/kitchen
  wastenet finetune runs/kitchen/config.yaml --out runs/kitchen --resume

The model's own recipe from the model itself, on its sources and the added ones (from
`wastenet samples export`): its old sources replayed at --replay of their items an
epoch and distilled from the model it started from, its outlier exposure kept, --epochs
at --lr, then one FixRes epoch. Then: wastenet export runs/kitchen/model.safetensors --format onnx,
wastenet gate OLD runs/kitchen/model.onnx --manifest ... --out runs/kitchen/gate.json,
and wastenet update publish."""

EPILOG_LR = """example:
  wastenet lr-find efficientnet_b0_100 --set manifest=runs/data/manifest.json --out runs/lr"""

EPILOG_CALIBRATE = """examples:
  wastenet calibrate runs/lite0/best.safetensors --manifest runs/data/manifest.json
  wastenet calibrate model.safetensors --manifest m.json --out model.t.safetensors

Fits one temperature T on the validation split (never the test split) so that the
probabilities mean what they say; accuracy is unchanged. T goes into the metadata of a
new bundle (default NAME.calibrated.safetensors beside it; the bundle read is never
rewritten); re-export afterwards (artifacts carry T inside their graph). wastenet train
already ships model.safetensors calibrated."""


def register(sub, formatter_class) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a preset or config file",
        epilog=EPILOG_TRAIN,
        formatter_class=formatter_class,
    )
    p.add_argument("config", nargs="?", help="preset name or YAML config path")
    p.add_argument("--out", help="run folder (config, checkpoints, metrics, curves)")
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override config keys (values parsed as YAML)",
    )
    p.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    p.add_argument("--list", action="store_true", help="list the presets and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    _register_finetune(sub, formatter_class)

    q = sub.add_parser(
        "lr-find",
        help="LR range test: loss-vs-LR plot and a suggested LR",
        epilog=EPILOG_LR,
        formatter_class=formatter_class,
    )
    q.add_argument("config", help="preset name or YAML config path")
    q.add_argument("--out", required=True, help="folder for lr_find.png and lr_find.json")
    q.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    q.add_argument("--start-lr", type=float, default=1e-7)
    q.add_argument("--end-lr", type=float, default=1e-1)
    q.add_argument("--steps", type=int, default=100)
    q.set_defaults(func=_lr_find)
    _register_calibrate(sub, formatter_class)


def _register_finetune(sub, formatter_class) -> None:
    from wastenet.train.finetune import EPOCHS, LR, REPLAY

    f = sub.add_parser(
        "finetune",
        help="fine-tune a model on sources added to its data (a bin's samples)",
        epilog=EPILOG_FINETUNE,
        formatter_class=formatter_class,
    )
    f.add_argument(
        "model", help="a .safetensors bundle, or a fine-tune's config.yaml with --resume"
    )
    f.add_argument("--manifest", help="a split holding the model's sources and the added ones")
    f.add_argument("--add", nargs="+", default=[], metavar="SOURCE", help="the sources to add")
    f.add_argument("--out", required=True, help="run folder")
    f.add_argument("--epochs", type=int, default=EPOCHS, help="main epochs (default: %(default)s)")
    f.add_argument("--lr", type=float, default=LR, help="learning rate (default: %(default)g)")
    f.add_argument(
        "--replay",
        type=float,
        default=REPLAY,
        help="share of the old sources' items drawn each epoch (default: %(default)g)",
    )
    f.add_argument("--trained-on", nargs="+", metavar="SOURCE", help="where the card lacks them")
    f.add_argument("--resume", action="store_true", help="continue a stopped run in --out")
    f.add_argument("--no-progress", action="store_true", help="no progress bars")
    f.set_defaults(func=_finetune)


def _register_calibrate(sub, formatter_class) -> None:
    from pathlib import Path

    p = sub.add_parser(
        "calibrate",
        help="fit the softmax temperature of a bundle on the validation split",
        description="Temperature scaling: the bin's confidence threshold then means the same "
        "for every model. Prints NLL and expected calibration error before and after.",
        formatter_class=formatter_class,
        epilog=EPILOG_CALIBRATE,
    )
    p.add_argument("bundle", type=Path, help="the .safetensors model bundle")
    p.add_argument("--manifest", type=Path, required=True, help="split manifest")
    p.add_argument("--split", default="val", choices=("val", "train"))
    p.add_argument("--out", type=Path, help="the calibrated bundle (default: NAME.calibrated."
                   "safetensors beside BUNDLE)")  # fmt: skip
    p.add_argument("--cache-dir", type=Path, help="the data stage's decoded image cache")
    p.add_argument(
        "--not-sure",
        metavar="SCORE[@T]",
        help="the card's 'not sure' rule: top_probability or certainty, @T re-tempered "
        "(certainty@2); its bar refuses --refuse of the split's items",
    )
    p.add_argument(
        "--refuse",
        type=float,
        metavar="SHARE",
        help="set the 'not sure' bar to refuse this share of the split's items "
        "(default 0.05 with --not-sure; without either the bar stays)",
    )
    p.set_defaults(func=_calibrate)


def _train(args) -> int:
    from pathlib import Path

    from wastenet.errors import ConfigError
    from wastenet.train.config import list_presets, load_train_config, parse_overrides

    if args.list:
        for name in list_presets():
            print(name)
        return 0
    if not args.out:
        raise ConfigError("--out is required (the run folder)")
    config = args.config
    if args.resume and not config:
        config = str(Path(args.out) / "config.yaml")
    if not config:
        raise ConfigError("name a preset or config file (wastenet train --list shows presets)")
    cfg = load_train_config(config, parse_overrides(args.set))
    from wastenet.train.loop import train

    try:
        best = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"stopped; resume with: wastenet train --out {args.out} --resume")
        return 130
    print(f"model: {best} (export this one)")
    return 0


def _finetune(args) -> int:
    import dataclasses
    from pathlib import Path

    from wastenet.errors import ConfigError
    from wastenet.train.config import load_train_config
    from wastenet.train.finetune import fine_tune_config, operating_point, weights_to_finetune
    from wastenet.train.loop import train

    if args.resume:
        cfg = load_train_config(args.model)
    elif not args.manifest:
        raise ConfigError("--manifest is required (the split with the added sources)")
    else:
        start = weights_to_finetune(args.model, args.manifest, args.out, None, args.trained_on)
        cfg = fine_tune_config(
            start, args.manifest, args.add, args.trained_on, teacher=args.model,
            epochs=args.epochs, lr=args.lr, replay=args.replay, name=f"finetune-{Path(args.out).name}",
        )  # fmt: skip
        known = [s for s in cfg.sources if s not in args.add]  # where its bar was set
        share, rule = operating_point(args.model, args.manifest, known, cfg.cache_dir)
        print(f"{args.model} answers 'not sure' ({rule}) to {100 * share:.1f} % of the val "
              f"items of {', '.join(known)}", end="")  # fmt: skip
        if share < 1:
            cfg = dataclasses.replace(cfg, not_sure_refuse=share, not_sure_rule=rule)
            print(": the fine-tune's bar will refuse as many")
        else:  # no operating point to keep
            print(": the fine-tune keeps the card's bar")
    try:
        best = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"stopped; resume with: wastenet finetune {args.out}/config.yaml --out "
              f"{args.out} --resume")  # fmt: skip
        return 130
    print(f"model: {best} (export this one)")
    return 0


def _lr_find(args) -> int:
    from wastenet.train.config import load_train_config, parse_overrides
    from wastenet.train.lr_find import lr_find

    cfg = load_train_config(args.config, parse_overrides(args.set))
    result = lr_find(cfg, args.out, args.start_lr, args.end_lr, args.steps)
    print(f"suggested learning rate: {result['suggested_lr']:.2e} (plot: {args.out}/lr_find.png)")
    return 0


def _calibrate(args) -> int:
    from wastenet.errors import WasteNetError
    from wastenet.train.calibrate import calibrate_bundle, default_out

    if not args.bundle.is_file() or args.bundle.suffix != ".safetensors":
        raise WasteNetError(f"{args.bundle}: give a .safetensors bundle to calibrate")
    out = args.out or default_out(args.bundle)
    s = calibrate_bundle(args.bundle, args.manifest, args.split, args.cache_dir, out,
                         not_sure=args.not_sure, refuse=args.refuse)  # fmt: skip
    print(
        f"temperature {s['temperature']:.3f} on {s['images']} {s['split']} images: "
        f"NLL {s['nll_before']:.4f} -> {s['nll_after']:.4f}, "
        f"ECE {100 * s['ece_before']:.2f} % -> {100 * s['ece_after']:.2f} %, "
        f"mean confidence {s['mean_confidence_before']:.3f} -> {s['mean_confidence_after']:.3f}"
    )
    if "not_sure" in s:
        ns = s["not_sure"]
        print(f"'not sure': {ns['rule']} (refuses {100 * ns['refused']:.1f} % of {s['split']})")
    print(f"written: {out}")
    return 0
