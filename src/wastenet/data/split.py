"""Build a split manifest: validate, find near-duplicates, stratify, assign folds.

Strata are (source, label); a set label such as paper+cardboard is its own stratum.
Each stratum is cut 72/18/10 (by default) to within one image: targets are rounded
per stratum and filled greedily. Near-duplicate groups are the unit of assignment, so
a group always lands in one split (and one fold). The order is sorted paths shuffled
by a seeded RNG: the same files and seed always give the same manifest.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wastenet.data.dedup import (
    DEFAULT_THRESHOLD,
    canonical_hash,
    duplicate_groups,
    group_pairs,
    near_duplicate_pairs,
)
from wastenet.data.manifest import SPLITS, Item, Manifest
from wastenet.data.sources import OOD, describe_rules, index_sources
from wastenet.data.validate import FileCheck, check_files, summarise_sizes
from wastenet.errors import WasteNetError


@dataclass
class SplitResult:
    manifest: Manifest
    validation: dict
    duplicates: dict


def split_targets(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Per-split counts for a stratum of n: val and test rounded, train takes the rest."""
    val = round(n * ratios[1])
    test = round(n * ratios[2])
    return [n - val - test, val, test]


def _check_ratios(ratios) -> tuple[float, float, float]:
    try:
        ratios = tuple(float(r) for r in ratios)
    except (TypeError, ValueError) as exc:
        raise WasteNetError(f"--ratios must be three numbers, got {ratios!r}") from exc
    if (
        len(ratios) != 3
        or not all(math.isfinite(r) for r in ratios)  # nan slips past < and > tests
        or min(ratios) < 0
        or abs(sum(ratios) - 1.0) > 1e-6
    ):
        raise WasteNetError(
            f"--ratios must be three finite, non-negative numbers summing to 1, got "
            f"{' '.join(f'{r:g}' for r in ratios)}"
        )
    return ratios


def assign(
    strata: list[str],
    groups: np.ndarray,
    ratios: tuple[float, float, float],
    folds: int,
    seed: int,
    fixed: list[tuple[str, int | None] | None] | None = None,
    train_only: list[bool] | None = None,
) -> tuple[list[str], list[int | None]]:
    """Split and fold per item; groups (near-duplicates) move together.

    ``fixed[i]`` pins item i (and its group) to a (split, fold) kept from an earlier
    manifest; the other groups fill what each stratum still needs. A group holding a
    ``train_only`` item goes to train; where a pin holds it elsewhere, its train-only
    items get the split ``""`` (dropped: never scored, and no leak into training).
    """
    n = len(strata)
    fixed = fixed or [None] * n
    train_only = train_only or [False] * n
    train = SPLITS.index("train")
    sizes = Counter(strata)
    need = {s: np.array(split_targets(c, ratios), dtype=float) for s, c in sizes.items()}
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        members[int(g)].append(i)
    rng = np.random.default_rng(seed)
    order = list(members)
    rng.shuffle(order)
    order.sort(key=lambda g: -len(members[g]))  # big groups first; stable keeps shuffle
    split_of: list[str] = [""] * n
    fold_of: list[int | None] = [None] * n
    pinned = {g: next((fixed[i] for i in members[g] if fixed[i]), None) for g in order}
    pinned = {g: pin for g, pin in pinned.items() if pin is not None}
    group_split: dict[int, int] = {}
    for g in order:
        if g in pinned:
            k = SPLITS.index(pinned[g][0])
        elif any(train_only[i] for i in members[g]):
            k = train
        else:
            score = np.zeros(3)
            for i in members[g]:
                score += need[strata[i]] / max(1, sizes[strata[i]])
            k = int(np.argmax(score + rng.random(3) * 1e-9))
        group_split[g] = k
        members[g] = [i for i in members[g] if k == train or not train_only[i]]
        for i in members[g]:
            need[strata[i]][k] -= 1
            split_of[i] = SPLITS[k]
    if folds > 1:
        fold_load = defaultdict(lambda: np.zeros(folds))
        for g in order:
            if SPLITS[group_split[g]] == "test" or not members[g]:
                continue
            pin = pinned.get(g)
            if pin is not None and pin[1] is not None and 0 <= pin[1] < folds:
                f = int(pin[1])
            else:
                load = sum(fold_load[strata[i]] for i in members[g])
                f = int(np.argmin(load + rng.random(folds) * 1e-9))
            for i in members[g]:
                fold_load[strata[i]][f] += 1
                fold_of[i] = f
    return split_of, fold_of


def _hex(h: int) -> str:
    return f"{h:016x}"


def build_split(
    specs: list[str | Path],
    seed: int = 0,
    folds: int = 5,
    ratios=(0.72, 0.18, 0.10),
    threshold: int = DEFAULT_THRESHOLD,
    workers: int = 2,
    progress: bool = True,
    crops_dir: Path | None = None,
    keep_splits_from: Manifest | None = None,
) -> SplitResult:
    """Index, validate, de-duplicate and split the sources into one Manifest.

    Detection sources write their crops under ``crops_dir``; the crops of one photo
    are one group, like near-duplicates. Files already in ``keep_splits_from`` (same
    path and content) keep their split and fold, so adding a source never moves an
    existing test image into training.
    """
    t0 = time.perf_counter()
    ratios = _check_ratios(ratios)
    if folds < 0 or folds == 1:
        raise WasteNetError("--folds must be 0 (no folds) or at least 2")
    sources, index = index_sources(specs, crops_dir, progress)
    files = index.files
    checks = check_files([f.path for f in files], workers=workers, progress=progress)
    t_validate = time.perf_counter() - t0
    usable = [(f, c) for f, c in zip(files, checks, strict=True) if c.status != "rejected"]
    hashes = np.array([c.phashes for _, c in usable], dtype=np.uint64).reshape(-1, 2, 8)
    pairs = near_duplicate_pairs(hashes, threshold)
    groups = group_pairs(len(usable), np.concatenate([pairs, same_group_pairs(usable)]))
    strata = [
        f"{f.source}/{'+'.join(f.rule.labels) if f.rule.kind != OOD else OOD}" for f, _ in usable
    ]
    fixed = kept_assignments(usable, keep_splits_from)
    train_only_sources = {s.name for s in sources if s.train_only}
    train_only = [f.source in train_only_sources for f, _ in usable]
    split_of, fold_of = assign(strata, groups, ratios, folds, seed, fixed, train_only)
    items, ood = [], []
    for (f, c), split, fold in zip(usable, split_of, fold_of, strict=True):
        if not split:
            continue  # a train-only item whose near-duplicate is kept in val or test
        is_ood = f.rule.kind == OOD
        item = Item(
            path=str(f.path),
            source=f.source,
            labels=() if is_ood else f.rule.labels,
            sha256=c.sha256,
            split="ood" if is_ood else split,
            fold=None if is_ood else fold,
            converted=tuple(c.converted),
            phash=_hex(canonical_hash(np.array(c.phashes, dtype=np.uint64))),
            origin=f.origin,
            ood_split=split if is_ood else None,
        )
        (ood if is_ood else items).append(item)
    elapsed = time.perf_counter() - t0
    manifest = Manifest(
        all_items=items,
        ood=ood,
        seed=seed,
        folds=folds,
        ratios=ratios,
        sources=[describe_source(s) for s in sources],
        info={
            "duplicate_threshold": threshold,
            "files_checked": len(checks),
            "rejected": sum(c.status == "rejected" for c in checks),
            "train_only_dropped": split_of.count(""),
            "seconds_validate": round(t_validate, 2),
            "seconds_total": round(elapsed, 2),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    all_usable = [*items, *ood]
    by_path = {it.path: it for it in all_usable}
    dup = duplicates_report(usable, groups, pairs, by_path, threshold)
    validation = {
        "checks": checks,
        "unknown_folders": index.unknown_folders,
        "ignored_folders": index.ignored_folders,
        "stray_files": index.stray_files,
        "skipped_folders": index.skipped_folders,
        "detection": index.detection,
        "sizes": summarise_sizes(checks),
    }
    return SplitResult(manifest, validation, dup)


def kept_assignments(usable: list[tuple], previous: Manifest | None) -> list | None:
    """(split, fold) for each usable file found unchanged in a previous manifest."""
    if previous is None:
        return None
    old = {(it.path, it.sha256): (it.split, it.fold) for it in previous.items()}
    return [old.get((str(f.path), c.sha256)) for f, c in usable]


def same_group_pairs(usable: list[tuple]) -> np.ndarray:
    """(i, j, 0) pairs chaining the items of each group key (one photo's crops)."""
    first: dict[str, int] = {}
    pairs = []
    for i, (f, _) in enumerate(usable):
        if f.group:
            j = first.setdefault(f.group, i)
            if j != i:
                pairs.append((j, i, 0))
    return np.array(pairs, dtype=np.int64).reshape(-1, 3)


def describe_source(source) -> dict:
    """The manifest's record of a source: name, root, type, class map, crop options."""
    out = {"name": source.name, "root": str(source.root), "folders": describe_rules(source)}
    if source.kind == "detection":
        out["type"] = "detection"
        out["crop"] = dict(vars(source.crop))
    if source.train_only:
        out["train_only"] = True
    return out


def duplicates_report(
    usable: list[tuple], groups: np.ndarray, pairs: np.ndarray, by_path: dict, threshold: int
) -> dict:
    """Groups of near-duplicates, split by whether they cross sources; none may cross splits."""
    dist = {(int(i), int(j)): int(d) for i, j, d in pairs}
    within, across, cross_split, with_ood = [], [], [], []
    for members in duplicate_groups(groups):
        entries = [e for i in members if (e := by_path.get(str(usable[i][0].path)))]
        if len(entries) < 2:
            continue  # the rest dropped (train-only items held out of val and test)
        record = {
            "members": [{"path": e.path, "source": e.source, "split": e.split} for e in entries],
            "max_pair_distance": max(
                (d for (i, j), d in dist.items() if i in members and j in members), default=0
            ),
        }
        (across if len({e.source for e in entries}) > 1 else within).append(record)
        if len({e.split for e in entries if e.split != "ood"}) > 1:
            cross_split.append(record)
        if any(e.split == "ood" for e in entries):
            with_ood.append(record)
    return {
        "threshold_bits": threshold,
        "pairs": int(len(pairs)),
        "groups_within_source": within,
        "groups_across_sources": across,
        "groups_across_splits": cross_split,
        "groups_with_ood": with_ood,
    }


def count_table(manifest: Manifest) -> list[dict]:
    """Rows of (source, label, train, val, test, total), one per stratum."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for it in [*manifest.all_items, *manifest.ood]:
        counts[(it.source, it.label or "ood")][it.split] += 1
    rows = []
    for (source, label), c in sorted(counts.items()):
        row = {"source": source, "label": label, **{s: c.get(s, 0) for s in SPLITS}}
        row["ood"] = c.get("ood", 0)
        row["total"] = sum(c.values())
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the per-source, per-label split counts."""
    head = "| source | label | train | val | test | ood | total |"
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['source']} | {r['label']} | {r['train']} | {r['val']} | {r['test']} "
            f"| {r['ood']} | {r['total']} |"
        )
    tot = {k: sum(r[k] for r in rows) for k in ("train", "val", "test", "ood", "total")}
    lines.append(
        f"| **all** | | {tot['train']} | {tot['val']} | {tot['test']} | {tot['ood']} "
        f"| {tot['total']} |"
    )
    return "\n".join(lines)


__all__ = ["FileCheck", "SplitResult", "assign", "build_split", "count_table", "format_table"]
