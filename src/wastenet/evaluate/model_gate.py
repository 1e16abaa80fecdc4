"""Gate a new model before a bin takes it: no regression on any held-out source.

SPEC's improvement loop retrains on what the bins saw, then gates the new model on every
held-out test set. A retrained model can lose what it knew (the new-place curve in the
model README: -3.4 points on the old sources after 400 photos of a new place), and a
model self-trained on its own guesses learns from labels of which four in ten are wrong.
``wastenet gate OLD NEW --manifest M`` scores both models on the same items (val + test
of every source, pooled: twice the evidence of test alone) and on the outliers no model
was trained on, paired item by item:

* per source, each model's top-1 (set-aware) with its Wilson interval, the difference
  and the exact McNemar p-value of the items only one of them got right;
* the scored items answered with a class, and the outliers answered "not sure", each
  model under its own card's rule, paired alike: a model that refuses more, or sorts
  more outliers into a door, regresses too.

A row is ``worse`` when the new model loses more than ``tolerance`` points and McNemar
says the loss is beyond noise (p < ``alpha``); ``worse, within noise`` when it loses
more than ``tolerance`` points on too few items to tell; ``better`` is the mirror of
``worse``; anything else is ``level``. The gate fails on a ``worse`` row (with
``strict``, on a ``worse, within noise`` row too). The verdict is written with both
models' SHA-256 and the manifest's hash, so a later step can check that the model it
publishes is the one that passed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from wastenet.errors import WasteNetError
from wastenet.evaluate.metrics import wilson_interval

DEFAULT_TOLERANCE = 1.0  # points: issue 14's guard-rail ("within 1 point")
DEFAULT_ALPHA = 0.05
ANSWERED_ROW = 'items answered (not "not sure")'
OOD_ROW = 'outliers: "not sure"'
WORSE, WORSE_WITHIN_NOISE, LEVEL, BETTER = "worse", "worse, within noise", "level", "better"


def mcnemar_exact(first_only: int, this_only: int) -> float:
    """Two-sided exact McNemar p-value from the two discordant counts."""
    n = first_only + this_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(first_only, this_only) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired(hits_old: np.ndarray, hits_new: np.ndarray) -> dict:
    """Two models' hits on the same items: each one's accuracy (%) with its Wilson 95 %
    interval, the difference in points, the discordant counts and McNemar's p."""
    hits_old, hits_new = np.asarray(hits_old, bool), np.asarray(hits_new, bool)
    n = len(hits_old)
    old_only, new_only = int((hits_old & ~hits_new).sum()), int((hits_new & ~hits_old).sum())
    row = {"n": n, "difference_points": 100.0 * (hits_new.mean() - hits_old.mean()) if n else 0.0}
    for key, hits in (("old", hits_old), ("new", hits_new)):
        interval = wilson_interval(int(hits.sum()), n)
        row[key] = {
            "accuracy": 100.0 * hits.mean() if n else None,
            "ci95": [100.0 * interval[0], 100.0 * interval[1]] if interval else None,
        }
    row.update(old_only=old_only, new_only=new_only, mcnemar_p=mcnemar_exact(old_only, new_only))
    return row


def verdict(row: dict, tolerance: float = DEFAULT_TOLERANCE, alpha: float = DEFAULT_ALPHA) -> str:
    d = round(row["difference_points"], 9)  # -1.0000000000000009 is a loss of 1 point
    beyond_noise = row["mcnemar_p"] < alpha
    if d < -tolerance:
        return WORSE if beyond_noise else WORSE_WITHIN_NOISE
    if d > tolerance and beyond_noise:
        return BETTER
    return LEVEL


def check_options(tolerance: float, alpha: float) -> None:
    if not tolerance >= 0:
        raise WasteNetError(f"--tolerance {tolerance:g}: give points >= 0, e.g. 1")
    if not 0 < alpha < 1:
        raise WasteNetError(f"--alpha {alpha:g}: give a p-value bar in (0, 1), e.g. 0.05")


def _predict(path: Path, items: list, ood: list, cache_dir, loaded: dict) -> dict:
    """One model's hits on ``items``, and its "not sure" flags on ``ood`` by its card
    (``loaded``: the decoded images of each list by input size, shared between models)."""
    from wastenet.evaluate.predict import open_engine, predict_items
    from wastenet.sureness import NotSureRule

    with open_engine(path) as engine:
        pred = predict_items(engine, items, cache_dir=cache_dir, loaded=loaded["items"])
        if pred.skipped:
            bad = pred.skipped[0]
            raise WasteNetError(f"{bad['path']}: {bad['reason']} (the gate scores every item)")
        rule = NotSureRule.of(engine.meta)
        out = {
            "hits": pred.score().hits,
            "refused": ~rule.sure(pred.probs),
            "rule": rule.describe(),
        }
        if ood:
            probs = predict_items(engine, ood, cache_dir=cache_dir, loaded=loaded["ood"]).probs
            out["not_sure"] = ~rule.sure(probs)
    return out


def gate(
    old: str | Path,
    new: str | Path,
    manifest_path: str | Path,
    splits: Sequence[str] = ("val", "test"),
    tolerance: float = DEFAULT_TOLERANCE,
    alpha: float = DEFAULT_ALPHA,
    strict: bool = False,
    cache_dir: str | Path | None = None,
) -> dict:
    """Score ``old`` and ``new`` on the manifest's held-out items and judge every row."""
    from wastenet.data.manifest import load_manifest
    from wastenet.meta import file_sha256

    check_options(tolerance, alpha)
    old, new = Path(old), Path(new)
    for path in (old, new):
        if not path.is_file():
            raise WasteNetError(f"{path}: no such model file")
    manifest = load_manifest(manifest_path)
    items = [it for split in splits for it in manifest.items(split=split)]
    if not items:
        raise WasteNetError(f"{manifest_path}: no items in {' + '.join(splits)} to gate on")
    ood = manifest.ood_items(training=False)  # no model was trained on these
    loaded: dict = {"items": {}, "ood": {}}  # decoded once where both take one input size
    scored = {key: _predict(path, items, ood, cache_dir, loaded) for key, path in
              (("old", old), ("new", new))}  # fmt: skip
    sources = np.array([it.source for it in items])
    rows = {
        s: paired(scored["old"]["hits"][sources == s], scored["new"]["hits"][sources == s])
        for s in sorted(set(sources))
    }
    rows[ANSWERED_ROW] = paired(~scored["old"]["refused"], ~scored["new"]["refused"])
    if ood:
        rows[OOD_ROW] = paired(scored["old"]["not_sure"], scored["new"]["not_sure"])
    for row in rows.values():
        row["verdict"] = verdict(row, tolerance, alpha)
    failing = {WORSE, WORSE_WITHIN_NOISE} if strict else {WORSE}
    failed_on = [name for name, row in rows.items() if row["verdict"] in failing]
    return {
        "passed": not failed_on,
        "failed_on": failed_on,
        "old": {"path": str(old), "sha256": file_sha256(old), "rule": scored["old"]["rule"]},
        "new": {"path": str(new), "sha256": file_sha256(new), "rule": scored["new"]["rule"]},
        "manifest": {"path": str(manifest_path), "hash": manifest.hash},
        "splits": list(splits),
        "tolerance_points": tolerance,
        "alpha": alpha,
        "strict": strict,
        "rows": rows,
        "pooled": paired(scored["old"]["hits"], scored["new"]["hits"]),
    }


def _accuracy(side: dict) -> str:
    if side["accuracy"] is None:
        return "–"
    low, high = side["ci95"]
    return f"{side['accuracy']:.1f} ({low:.1f}-{high:.1f})"


def gate_table(result: dict) -> str:
    """The rows as a Markdown table, and the decision."""
    lines = [
        "| items | n | old % (95 % CI) | new % (95 % CI) | new - old | old only | new only "
        "| McNemar p | verdict |",
        "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    sureness_rows = (ANSWERED_ROW, OOD_ROW)
    rows = [
        *((k, r) for k, r in result["rows"].items() if k not in sureness_rows),
        ("pooled", {**result["pooled"], "verdict": ""}),
        *((k, r) for k, r in result["rows"].items() if k in sureness_rows),
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['n']} | {_accuracy(r['old'])} | {_accuracy(r['new'])} | "
            f"{r['difference_points']:+.1f} | {r['old_only']} | {r['new_only']} | "
            f"{r['mcnemar_p']:.3g} | {r['verdict']} |"
        )
    tolerance = result["tolerance_points"]
    rule = (
        f"a row fails when the new model loses more than {tolerance:g} "
        f"point{'s' * (tolerance != 1)} with McNemar p < {result['alpha']:g}"
        + (" (strict: or within noise)" if result["strict"] else "")
    )
    if result["passed"]:
        lines.append(f"gate PASSED: no row worse ({rule})")
    else:
        lines.append(f"gate FAILED on {', '.join(result['failed_on'])} ({rule})")
    return "\n".join(lines)
