"""Split manifest: stratified ratios, determinism, set labels, near-duplicates, changes."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from wastenet.data.dedup import dihedral_phashes, group_pairs, near_duplicate_pairs
from wastenet.data.manifest import check_files, load_manifest
from wastenet.data.sources import load_source
from wastenet.data.split import build_split, split_targets
from wastenet.errors import ConfigError, WasteNetError


def distinct_image(seed: int, size_wh=(64, 48)) -> np.ndarray:
    """Coarse random blobs: far apart in perceptual-hash space for different seeds."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return cv2.resize(coarse, size_wh, interpolation=cv2.INTER_CUBIC)


def noise_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    for k, (folder, n) in enumerate(counts.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = distinct_image(seed * 100_000 + k * 1000 + i)
            Image.fromarray(img).save(root / folder / f"{folder}_{i:03d}.png")
    return root


COUNTS = {"cardboard": 23, "glass": 31, "metal": 17, "paper": 40, "plastic": 12}


def test_ratios_within_one_image_per_stratum_and_folds(tmp_path):
    a = noise_folder(tmp_path / "alpha", COUNTS, seed=1)
    b = noise_folder(tmp_path / "beta", {"glass": 19, "paper_and_cardboard": 27}, seed=2)
    result = build_split([a, b], folds=5, workers=1, progress=False)
    m = result.manifest
    assert result.duplicates["pairs"] == 0
    strata = Counter((it.source, it.labels) for it in m.items())
    assert ("beta", ("cardboard", "paper")) in strata  # the set label is its own stratum
    for (source, labels), n in strata.items():
        got = Counter(it.split for it in m.items(source=source) if it.labels == labels)
        for split, want in zip(("train", "val", "test"), (0.72, 0.18, 0.10), strict=True):
            assert abs(got[split] - want * n) <= 1, (source, labels, split, got, n)
        assert [got[s] for s in ("train", "val", "test")] == split_targets(n, (0.72, 0.18, 0.1))
    test_items = m.items(split="test")
    assert all(it.fold is None for it in test_items)
    folds = Counter(it.fold for it in m.items() if it.split != "test")
    assert set(folds) == {0, 1, 2, 3, 4} and max(folds.values()) - min(folds.values()) <= 4
    assert {it.source for it in test_items} == {"alpha", "beta"}  # each keeps its test set


def test_split_is_deterministic_and_seed_dependent(tmp_path):
    root = noise_folder(tmp_path / "src", COUNTS)
    one = build_split([root], seed=0, workers=1, progress=False).manifest
    two = build_split([root], seed=0, workers=1, progress=False).manifest
    other = build_split([root], seed=7, workers=1, progress=False).manifest
    assert one.to_dict() == {**two.to_dict(), "info": one.info} and one.hash == two.hash
    assert [it.split for it in one.items()] != [it.split for it in other.items()]
    assert one.hash != other.hash


def test_flipped_and_rotated_copies_stay_in_one_split(tmp_path):
    a = noise_folder(tmp_path / "a", COUNTS, seed=3)
    b = noise_folder(tmp_path / "b", {"metal": 10}, seed=4)
    originals = [a / "glass" / f"glass_{i:03d}.png" for i in range(6)]
    copies = []
    for i, path in enumerate(originals):
        img = np.asarray(Image.open(path))
        variant = [img[:, ::-1], np.rot90(img, 2), np.rot90(img, 1), img[::-1]][i % 4]
        folder = a / "glass" if i < 3 else b / "metal"  # within and across sources
        copy = folder / f"copy_{i}.jpg"
        Image.fromarray(np.ascontiguousarray(variant)).save(copy, quality=92)
        copies.append(copy)
    result = build_split([a, b], workers=1, progress=False)
    by_path = {Path(it.path).name: it for it in result.manifest.items()}
    for orig, copy in zip(originals, copies, strict=True):
        assert by_path[orig.name].split == by_path[copy.name].split
    dup = result.duplicates
    assert dup["groups_across_splits"] == []
    assert len(dup["groups_within_source"]) == 3 and len(dup["groups_across_sources"]) == 3
    for group in dup["groups_within_source"] + dup["groups_across_sources"]:
        assert len(group["members"]) == 2


def test_bit_parallel_search_matches_brute_force():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, size=(300, 8), dtype=np.int64).astype(np.uint64)
    # plant near copies: flip a few bits of another item's variant 3
    for i in range(0, 40, 2):
        flips = np.uint64(sum(1 << int(b) for b in rng.choice(64, size=i % 7, replace=False)))
        base[i + 1, 0] = base[i, 3] ^ flips
    pairs = near_duplicate_pairs(base, threshold=6)
    brute = set()
    for i in range(len(base)):
        for j in range(i + 1, len(base)):
            d = min(bin(int(base[i, v]) ^ int(base[j, 0])).count("1") for v in range(8))
            if d <= 6:
                brute.add((i, j, d))
    assert {tuple(p) for p in pairs.tolist()} == brute and len(brute) >= 20
    groups = group_pairs(len(base), pairs)
    assert all(groups[i] == groups[j] for i, j, _ in pairs)


def test_dihedral_hashes_see_through_flips():
    img = distinct_image(42, (80, 60))
    plain = dihedral_phashes(img)
    for variant in (img[:, ::-1], np.rot90(img, 1), np.rot90(img, 3)[::-1]):
        hashes = dihedral_phashes(np.ascontiguousarray(variant))
        pair = near_duplicate_pairs(np.stack([plain, hashes]), threshold=2)
        assert len(pair) == 1


def test_changed_and_vanished_files_are_reported(tmp_path):
    root = noise_folder(tmp_path / "src", {"glass": 8, "metal": 8})
    result = build_split([root], workers=1, progress=False)
    result.manifest.save(tmp_path / "m.json")
    m = load_manifest(tmp_path / "m.json")
    assert check_files(m) == {"vanished": [], "changed": []}
    gone, edited = root / "glass" / "glass_001.png", root / "metal" / "metal_002.png"
    gone.unlink()
    Image.fromarray(distinct_image(999)).save(edited)
    found = check_files(m)
    assert found == {"vanished": [str(gone.resolve())], "changed": [str(edited.resolve())]}


def test_source_yaml_maps_sets_ood_ignore_and_reports_unknown(tmp_path):
    noise_folder(
        tmp_path / "web", {"Aluminium": 6, "mixed_paper": 6, "rubbish": 5, "junk": 3, "odd": 2}
    )
    cfg = tmp_path / "web.yaml"
    cfg.write_text(
        "name: webby\nroot: web\nfolders:\n  Aluminium: metal\n"
        "  mixed_paper: [paper, cardboard]\n  rubbish: ood\n  junk: ignore\n"
    )
    result = build_split([cfg], workers=1, progress=False)
    m = result.manifest
    assert {it.labels for it in m.items()} == {("metal",), ("cardboard", "paper")}
    assert len(m.ood) == 5 and all(it.split == "ood" and it.source == "webby" for it in m.ood)
    assert [Path(u["folder"]).name for u in result.validation["unknown_folders"]] == ["odd"]
    assert [Path(u["folder"]).name for u in result.validation["ignored_folders"]] == ["junk"]


def test_plain_folder_defaults(tmp_path):
    root = noise_folder(tmp_path / "web-mixed", {"paper_and_cardboard": 5, "trash": 4, "glass": 5})
    m = build_split([root], workers=1, progress=False).manifest
    assert {it.source for it in m.items()} == {"web-mixed"}
    assert Counter(it.labels for it in m.items()) == {("cardboard", "paper"): 5, ("glass",): 5}
    assert len(m.items(split="ood")) == 4


@pytest.mark.parametrize(
    "yaml_text, error",
    [
        ("name: x\nroot: .\nfolders: {a: banana}\n", ConfigError),
        ("name: x\nroot: .\ncolour: red\n", ConfigError),
        ("name: x\nroot: nowhere\n", WasteNetError),
    ],
)
def test_bad_source_yaml_is_one_clear_error(tmp_path, yaml_text, error):
    cfg = tmp_path / "s.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(error):
        load_source(cfg)


def test_edited_manifest_is_refused(tmp_path):
    root = noise_folder(tmp_path / "src", {"glass": 6})
    build_split([root], workers=1, progress=False).manifest.save(tmp_path / "m.json")
    data = json.loads((tmp_path / "m.json").read_text())
    data["items"][0]["split"] = "test" if data["items"][0]["split"] != "test" else "train"
    (tmp_path / "m.json").write_text(json.dumps(data))
    with pytest.raises(WasteNetError, match="hash"):
        load_manifest(tmp_path / "m.json")


def test_keep_splits_from_pins_existing_files_when_a_source_is_added(tmp_path):
    a = noise_folder(tmp_path / "alpha", COUNTS, seed=1)
    b = noise_folder(tmp_path / "beta", {"glass": 19, "metal": 23}, seed=2)
    before = build_split([a], folds=5, workers=1, progress=False).manifest
    plain = build_split([a, b], folds=5, workers=1, progress=False).manifest
    kept = build_split([a, b], folds=5, workers=1, progress=False, keep_splits_from=before)
    old = {it.path: (it.split, it.fold) for it in before.items()}
    pinned = {it.path: (it.split, it.fold) for it in kept.manifest.items(source="alpha")}
    assert pinned == old
    # Without it, adding a source reshuffles the first source's split (what pinning is for).
    moved = {it.path: (it.split, it.fold) for it in plain.items(source="alpha")}
    assert moved != old
    # The new source is still split 72/18/10 within one image per stratum.
    for label, n in (("glass", 19), ("metal", 23)):
        got = Counter(it.split for it in kept.manifest.items(source="beta") if it.label == label)
        assert abs(got["test"] - 0.10 * n) <= 1 and abs(got["val"] - 0.18 * n) <= 1


def test_a_train_only_source_is_trained_on_and_never_scored(tmp_path):
    """A train-only source (a model's labels): every item in train; one that is a
    near-duplicate of an item pinned to val or test is left out and counted, not scored."""
    a = noise_folder(tmp_path / "alpha", COUNTS, seed=1)
    before = build_split([a], folds=5, workers=1, progress=False).manifest
    held = [it for it in before.items() if it.split in ("val", "test")][:2]
    guessed = noise_folder(tmp_path / "guessed", {"glass": 12, "metal": 9}, seed=5)
    for k, it in enumerate(held):  # frames of a held-out item, labelled by the bin
        img = np.asarray(Image.open(it.path))[:, ::-1]
        Image.fromarray(np.ascontiguousarray(img)).save(guessed / "glass" / f"again_{k}.jpg")
    cfg = guessed / "source.yaml"
    cfg.write_text("name: guessed\nroot: .\ntrain_only: true\n")
    assert load_source(cfg).train_only and not load_source(a).train_only

    result = build_split([a, cfg], folds=5, workers=1, progress=False, keep_splits_from=before)
    m = result.manifest
    mine = m.items(source="guessed")
    assert len(mine) == 21 and {it.split for it in mine} == {"train"}
    assert all(it.fold is not None for it in mine)  # and in the folds, like any train item
    assert not any(Path(it.path).name.startswith("again_") for it in mine)
    assert m.info["train_only_dropped"] == 2
    kept = {it.path: it.split for it in m.items(source="alpha")}
    assert all(kept[it.path] == it.split for it in before.items())  # nothing held out moved
    assert next(s for s in m.sources if s["name"] == "guessed")["train_only"] is True
    assert result.duplicates["groups_across_splits"] == []

    with pytest.raises(ConfigError, match="train_only"):
        cfg.write_text("name: guessed\nroot: .\ntrain_only: maybe\n")
        load_source(cfg)
