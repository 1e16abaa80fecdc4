"""Does the bin classify better when it crops to the item? A replay on real backgrounds.

The bin's camera is fixed and the presence gate knows the empty tray. This replays that:
for each real background (a floor, table or shelf cut from a detection dataset's photos
by ``wastenet data backgrounds``), the gate learns a few empty frames (with sensor noise),
then held-out items appear one at a time: studio objects cut out of their white
backdrop (``object_alpha``) and pasted small and off-centre (a share of the frame height
drawn from ``--scale``). The real loop (gate -> preprocess -> engine) runs twice on the
same frames, classifying the whole frame and the crop around what changed
(``crop_to_object``). Top-1 of each, per class, with Wilson intervals and an exact
McNemar test, goes to benchmarks/results/object_crop.json.

    python benchmarks/bench_object_crop.py --manifest runs/data4/manifest.json \\
        --backgrounds runs/bg/trashnetpp --source trashnet --split test
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from wastenet.accelerate import load_engine
from wastenet.classes import CLASSES, DEFAULT_INPUT_SIZE
from wastenet.data.background import BackgroundPool, object_alpha
from wastenet.data.manifest import load_manifest
from wastenet.evaluate.metrics import score, wilson_interval
from wastenet.evaluate.model_gate import mcnemar_exact
from wastenet.imageio import read_rgb
from wastenet.provenance import provenance
from wastenet.runtime.actuators import open_actuator
from wastenet.runtime.app import DEFAULT_MODEL
from wastenet.runtime.doors import load_door_map
from wastenet.runtime.gate import PresenceGate
from wastenet.runtime.loop import BinLoop
from wastenet.runtime.testing import FrameReplay
from wastenet.runtime.vote import MajorityVote

RESULTS = Path(__file__).resolve().parent / "results" / "object_crop.json"
FRAME_HW = DEFAULT_INPUT_SIZE  # the paper's capture size: the 75 % input
EMPTY_FRAMES, ITEM_FRAMES = 4, 2


def paste(obj: np.ndarray, alpha: np.ndarray, bg: np.ndarray, share: float, rng) -> np.ndarray:
    """The object scaled to ``share`` of the frame height, at a random place."""
    h, w = bg.shape[:2]
    oh = max(8, round(h * share))
    ow = max(8, round(obj.shape[1] * oh / obj.shape[0]))
    if ow > w * 0.9:
        ow = round(w * 0.9)
        oh = round(obj.shape[0] * ow / obj.shape[1])
    small = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_AREA).astype(np.float32)
    a = cv2.resize(alpha, (ow, oh), interpolation=cv2.INTER_AREA)[:, :, None]
    x0, y0 = int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))
    out = bg.astype(np.float32).copy()
    region = out[y0 : y0 + oh, x0 : x0 + ow]
    out[y0 : y0 + oh, x0 : x0 + ow] = small * a + region * (1 - a)
    return out.astype(np.uint8)


def noisy(img: np.ndarray, rng, sigma: float = 3.0) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)


def build_scenes(items, pool: BackgroundPool, per_background: int, scale, seed: int):
    """[(frames, labels)] per background: empty frames, then each item, then empty again."""
    rng = np.random.default_rng(seed)
    cut = []
    for it in items:
        img = read_rgb(it.path)
        alpha = object_alpha(img)
        if alpha is not None:
            cut.append((it, img, alpha))
    scenes = []
    for start in range(0, len(cut), per_background):
        bg = pool.sample(rng, *FRAME_HW)
        frames, labels = [noisy(bg, rng) for _ in range(EMPTY_FRAMES)], [None] * EMPTY_FRAMES
        for it, img, alpha in cut[start : start + per_background]:
            scene = paste(img, alpha, bg, float(rng.uniform(*scale)), rng)
            frames += [noisy(scene, rng) for _ in range(ITEM_FRAMES)]
            labels += [it.labels] * ITEM_FRAMES
            frames += [noisy(bg, rng) for _ in range(EMPTY_FRAMES)]
            labels += [None] * EMPTY_FRAMES
        scenes.append((frames, labels))
    return scenes, len(items) - len(cut)


def replay(engine, scenes, crop: bool) -> list[tuple[tuple, str | None]]:
    """(true labels, predicted class) for every frame with an item that the gate saw."""
    out = []
    for frames, labels in scenes:
        doors = load_door_map()
        results = []
        loop = BinLoop(
            FrameReplay(frames), engine, MajorityVote(10, 0.7), open_actuator("sim://", doors),
            doors, PresenceGate(), [("collect", results.append)], crop_to_object=crop,
        )  # fmt: skip
        loop.run()
        for r in results:
            truth = labels[r.frame.index]
            if truth is None:
                continue
            pred = engine.meta.labels[int(np.argmax(r.probs))] if r.probs is not None else None
            out.append((truth, pred))
    return out


def summarise(pairs) -> dict:
    """Set-aware top-1 (``metrics.score``) of the frames; one the gate missed is wrong."""
    seen = [i for i, (_, p) in enumerate(pairs) if p is not None]
    right = np.zeros(len(pairs), bool)
    if seen:
        pred = [CLASSES.index(pairs[i][1]) for i in seen]
        right[seen] = score(np.array(pred), [pairs[i][0] for i in seen]).hits
    per_class = {}
    for cls in sorted({c for t, _ in pairs for c in t}):
        mask = np.array([cls in t for t, _ in pairs])
        per_class[cls] = {"n": int(mask.sum()), "top1": float(right[mask].mean())}
    n = len(right)
    return {
        "frames": n,
        "missed_by_gate": sum(p is None for _, p in pairs),
        "top1": float(right.mean()) if n else None,
        "top1_ci95": wilson_interval(int(right.sum()), n),
        "per_class": per_class,
        "right": right,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=str(DEFAULT_MODEL), help="engine artifact (.onnx, ...)")
    ap.add_argument("--manifest", required=True, help="split manifest")
    ap.add_argument("--backgrounds", required=True, help="folder of real background photos")
    ap.add_argument("--source", default="trashnet", help="source of the items (studio objects)")
    ap.add_argument("--split", default="test", help="its split (one the model never trained on)")
    ap.add_argument("--scale", type=float, nargs=2, default=[0.3, 0.6], help="item height share")
    ap.add_argument("--per-background", type=int, default=4, help="items per background")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()

    engine = load_engine(args.model)
    items = load_manifest(args.manifest).items(split=args.split, source=args.source)
    pool = BackgroundPool(args.backgrounds, texture_share=0.0)
    scenes, no_mask = build_scenes(items, pool, args.per_background, args.scale, args.seed)
    rows = {}
    for crop in (False, True):
        rows["crop_to_object" if crop else "whole_frame"] = summarise(replay(engine, scenes, crop))
    crop, whole = rows["crop_to_object"]["right"], rows["whole_frame"]["right"]
    p = mcnemar_exact(int(np.sum(crop & ~whole)), int(np.sum(~crop & whole)))
    result = {
        "command": "python benchmarks/bench_object_crop.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k != "out"
        ),  # fmt: skip
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
        "model": Path(args.model).name,
        "items": len(items),
        "items_without_clean_mask": no_mask,
        "backgrounds": len(scenes),
        "mcnemar_p": p,
        **{k: {kk: vv for kk, vv in v.items() if kk != "right"} for k, v in rows.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**result, "provenance": provenance()}, indent=1))
    print("| view | frames | top-1 (95 % CI) | " + " | ".join(CLASSES) + " |")
    for name in ("whole_frame", "crop_to_object"):
        r = result[name]
        lo, hi = r["top1_ci95"]
        cls = " | ".join(
            f"{r['per_class'][c]['top1']:.1%}" if c in r["per_class"] else "–" for c in CLASSES
        )
        print(f"| {name} | {r['frames']} | {r['top1']:.1%} ({lo:.1%}-{hi:.1%}) | {cls} |")
    print(f"McNemar p = {p:.3g}; {no_mask} items had no clean mask and were left out")


if __name__ == "__main__":
    main()
