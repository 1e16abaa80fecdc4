"""Detection sources: boxes become crops, class map, minimum size, one photo in one split."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from wastenet.cli import main
from wastenet.data.detection import Box, CropConfig, crop_window, parse_yolo_line, photo_group
from wastenet.data.manifest import load_manifest
from wastenet.data.sources import load_source
from wastenet.data.split import build_split
from wastenet.errors import ConfigError, WasteNetError

NAMES = ["Cable", "Glass", "Metal", "Plastics", "can"]
CLASS_MAP = {
    "Cable": "ood",
    "Glass": "glass",
    "Metal": "ignore",
    "Plastics": "plastic",
    "can": "metal",
}


def blob_photo(seed: int, size=160) -> np.ndarray:
    """A photo of coarse random blobs: photos (and their crops) far apart in phash space."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def make_detection_dataset(root: Path, photos: int = 24, seed: int = 0) -> Path:
    """A YOLO layout: train/valid subsets, each photo with 3 boxes of cycling classes,
    one box too small to keep, plus one Roboflow copy of the first photo."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(f"nc: {len(NAMES)}\nnames: {NAMES}\n")
    for i in range(photos):
        subset = "train" if i % 4 else "valid"
        (root / subset / "images").mkdir(parents=True, exist_ok=True)
        (root / subset / "labels").mkdir(parents=True, exist_ok=True)
        stem = f"IMG_{i:03d}_jpg.rf.{i:08x}"
        Image.fromarray(blob_photo(seed * 1000 + i)).save(root / subset / "images" / f"{stem}.jpg")
        lines = [
            f"{(i) % 5} 0.25 0.25 0.40 0.40",  # 64 px: kept
            f"{(i + 1) % 5} 0.70 0.70 0.50 0.30",  # 80x48 px: kept
            f"{(i + 2) % 5} 0.50 0.10 0.05 0.05",  # 8 px: too small
        ]
        (root / subset / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    # A Roboflow augmented copy of photo 0 in another subset: same photo, same group.
    (root / "test" / "images").mkdir(parents=True)
    (root / "test" / "labels").mkdir(parents=True)
    copy = np.ascontiguousarray(blob_photo(seed * 1000)[:, ::-1])
    Image.fromarray(copy).save(root / "test" / "images" / "IMG_000_jpg.rf.ffffffff.jpg")
    (root / "test" / "labels" / "IMG_000_jpg.rf.ffffffff.txt").write_text(
        "1 0.5 0.5 0.5 0.5\n9 0.5 0.5 0.2 0.2\n"  # the second: a bad class id
    )
    return root


def source_yaml(tmp_path: Path, root: Path, **extra) -> Path:
    import yaml

    data = {"name": "det", "type": "detection", "root": str(root), "classes": CLASS_MAP}
    data["crop"] = {"margin": 0.1, "min_side": 32}
    data.update(extra)
    path = tmp_path / "det.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def det_yaml(tmp_path) -> Path:
    return source_yaml(tmp_path, make_detection_dataset(tmp_path / "yolo"))


def test_parse_boxes_and_polygons():
    box = parse_yolo_line("2 0.5 0.5 0.5 0.25", 200, 100, 5)
    assert box == Box(2, 50, 38, 150, 62)  # cx 100, cy 50, w 100, h 25 (y0 37.5 rounds to 38)
    poly = parse_yolo_line("1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6", 100, 100, 5)
    assert (poly.x0, poly.y0, poly.x1, poly.y1) == (10, 20, 30, 60)
    for bad in ("1 0.5 0.5 0.5", "7 0.5 0.5 0.1 0.1", "1 0.5 0.5 0 0", "x 1 1 1 1"):
        with pytest.raises(ValueError):
            parse_yolo_line(bad, 100, 100, 5)


def test_crop_window_adds_margin_widens_to_aspect_and_stays_inside():
    cfg = CropConfig(margin=0.25, min_side=1, aspect=4 / 3)
    x0, y0, x1, y1 = crop_window(Box(0, 100, 100, 140, 200), 640, 640, cfg)  # tall box 40x100
    assert (y1 - y0) == pytest.approx(150, abs=1)  # 100 + 2 x 25 % margin
    assert (x1 - x0) / (y1 - y0) == pytest.approx(3 / 4, abs=0.02)  # portrait 3:4
    assert x0 <= 100 and x1 >= 140 and y0 <= 100 and y1 >= 200
    edge = crop_window(Box(0, 0, 0, 60, 30), 640, 640, cfg)  # at the corner: shifted inside
    assert edge[0] == 0 and edge[1] == 0 and edge[2] > 60
    keep = crop_window(Box(0, 10, 10, 50, 20), 640, 640, CropConfig(0.0, 1, 0))
    assert keep == (10, 10, 50, 20)


def test_photo_group_strips_roboflow_copy_suffix():
    assert photo_group(Path("a/IMG_1_jpg.rf.0123abcd.jpg")) == "IMG_1_jpg"
    assert photo_group(Path("a/plain.jpg")) == "plain"


def test_detection_split_class_map_min_size_and_one_photo_per_split(det_yaml, tmp_path):
    crops = tmp_path / "out" / "crops"
    result = build_split([det_yaml], folds=0, workers=1, progress=False, crops_dir=crops)
    m = result.manifest
    items, ood = m.items(), m.items(split="ood")
    # 24 photos x 2 kept boxes + the copy's 1 good box; Metal ignored, Cable -> ood.
    per_name = defaultdict(int)
    for i in range(24):
        for k in (0, 1):
            per_name[NAMES[(i + k) % 5]] += 1
    per_name[NAMES[1]] += 1  # the Roboflow copy's Glass box
    want_items = per_name["Glass"] + per_name["Plastics"] + per_name["can"]
    assert len(items) == want_items
    assert len(ood) == per_name["Cable"]
    labels = {it.labels for it in items}
    assert labels == {("glass",), ("plastic",), ("metal",)}
    assert all(Path(it.path).is_file() and str(crops) in it.path for it in [*items, *ood])
    # Each crop is cut from its photo at the recorded box (a real crop, not the photo).
    first = items[0]
    x0, y0, x1, y1 = first.origin["box"]
    crop = np.asarray(Image.open(first.path))
    assert crop.shape[:2] == (y1 - y0, x1 - x0)
    photo = np.asarray(Image.open(first.origin["photo"]).convert("RGB")).astype(int)
    assert np.abs(crop.astype(int) - photo[y0:y1, x0:x1]).mean() < 6  # JPEG re-encode only
    # All crops of one photo (and of its Roboflow copy) sit in one split.
    by_photo = defaultdict(set)
    for it in items:
        by_photo[photo_group(Path(it.origin["photo"]))].add(it.split)
    assert all(len(splits) == 1 for splits in by_photo.values())
    # An outlier crop (Cable) follows its photo's split, so outlier exposure never trains
    # on a photo that is scored; every outlier has one.
    for it in ood:
        assert it.ood_split in ("train", "val", "test")
        assert by_photo.get(photo_group(Path(it.origin["photo"])), {it.ood_split}) == {it.ood_split}
    assert {s for splits in by_photo.values() for s in splits} == {"train", "val", "test"}
    # What was kept and dropped is reported per dataset class.
    det = result.validation["detection"][0]
    assert det["classes"]["Metal"]["kept"] == 0 and det["classes"]["Metal"]["maps_to"] == "ignore"
    assert sum(c["too_small"] for c in det["classes"].values()) == 24
    assert sum(c["boxes"] for c in det["classes"].values()) == 24 * 3 + 1
    assert len(det["bad_label_lines"]) == 1 and det["bad_label_lines"][0]["line"] == 2
    assert m.sources[0]["type"] == "detection" and m.sources[0]["crop"]["min_side"] == 32


def test_min_side_is_applied(tmp_path):
    root = make_detection_dataset(tmp_path / "yolo", photos=8)
    loose = build_split(
        [source_yaml(tmp_path, root, crop={"min_side": 4})],
        folds=0,
        workers=1,
        progress=False,
        crops_dir=tmp_path / "a",
    )
    strict = build_split(
        [source_yaml(tmp_path, root, crop={"min_side": 60})],
        folds=0,
        workers=1,
        progress=False,
        crops_dir=tmp_path / "b",
    )
    n_loose = len(loose.manifest.items()) + len(loose.manifest.items(split="ood"))
    n_strict = len(strict.manifest.items()) + len(strict.manifest.items(split="ood"))
    # min_side 4 keeps the 8 px boxes too; min_side 60 keeps only the 64x64 boxes (+ copy).
    assert n_loose > n_strict
    assert all(min(Image.open(it.path).size) >= 60 for it in strict.manifest.items())


def test_cli_split_writes_crops_beside_the_manifest(det_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["data", "split", str(det_yaml), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "detection source det" in text and "too small" in text
    m = load_manifest(out)
    assert all(it.path.startswith(str((out / "crops" / "det").resolve())) for it in m.items())
    report = json.loads((out / "validation.json").read_text())
    assert report["detection"][0]["source"] == "det"
    # A second split reuses the crops and gives the identical manifest.
    assert main(["data", "split", str(det_yaml), "--out", str(out), "--workers", "1"]) == 0
    assert load_manifest(out).hash == m.hash


def test_bad_detection_configs_are_clear_errors(tmp_path):
    root = make_detection_dataset(tmp_path / "yolo", photos=4)
    unmapped = dict(CLASS_MAP)
    del unmapped["Cable"]
    with pytest.raises(ConfigError, match="Cable"):
        load_source(source_yaml(tmp_path, root, classes=unmapped))
    with pytest.raises(ConfigError, match="Bottle"):
        load_source(source_yaml(tmp_path, root, classes={**CLASS_MAP, "Bottle": "glass"}))
    with pytest.raises(ConfigError, match="margin"):
        load_source(source_yaml(tmp_path, root, crop={"margin": -1}))
    with pytest.raises(ConfigError, match="type"):
        load_source(source_yaml(tmp_path, root, type="segmentation"))
    (root / "data.yaml").unlink()
    with pytest.raises(ConfigError, match="data.yaml"):
        load_source(source_yaml(tmp_path, root))
    empty = tmp_path / "empty"
    empty.mkdir()
    src = source_yaml(tmp_path, empty, names=NAMES)
    with pytest.raises(WasteNetError, match="YOLO layout"):
        build_split([src], folds=0, workers=1, progress=False, crops_dir=tmp_path / "c")


def test_largest_free_rectangle_and_background_window():
    from wastenet.data.detection import background_window, largest_free_rectangle

    grid = np.zeros((4, 6), dtype=bool)
    grid[:, 2] = True  # a wall: free columns 0-1 (4x2 = 8) and 3-5 (4x3 = 12)
    assert largest_free_rectangle(grid) == (3, 0, 6, 4)
    grid[1, 4] = True  # now the right part's best is rows 2-3 x cols 3-5 (6) vs left 8
    assert largest_free_rectangle(grid) == (0, 0, 2, 4)
    # One box in the top-left quarter of a 640x640 photo: the free region avoids it.
    window = background_window([Box(0, 0, 0, 300, 300)], 640, 640, min_share=0.35)
    x0, y0, x1, y1 = window
    assert x0 >= 300 or y0 >= 300
    assert (x1 - x0) >= 0.35 * 640 and (y1 - y0) >= 0.35 * 640
    assert background_window([Box(0, 10, 10, 630, 630)], 640, 640) is None  # nothing free


def test_cli_backgrounds_writes_one_free_region_per_photo(tmp_path, capsys):
    root = make_detection_dataset(tmp_path / "yolo", photos=6)
    src = source_yaml(tmp_path, root)
    out = tmp_path / "bg"
    assert main(["data", "backgrounds", str(src), "--out", str(out)]) == 0
    written = sorted(out.glob("*.jpg"))
    # 6 photos, one of them with a Roboflow copy (one group): at most 6 regions, each
    # free of every box of its photo.
    assert 1 <= len(written) <= 6
    assert "backgrounds from" in capsys.readouterr().out
    folder = tmp_path / "plain"
    (folder / "glass").mkdir(parents=True)
    assert main(["data", "backgrounds", str(folder), "--out", str(out)]) == 2
