"""Detection sources: every labelled box of a detection dataset becomes one image item.

A detection dataset (YOLO layout: ``<root>/<subset>/images/*.jpg`` beside
``<root>/<subset>/labels/*.txt``, class names in ``<root>/data.yaml``) holds photos of
several items each. Classification needs one item per image, so each box is cut out
with a margin, widened to the model's aspect (4:3 or 3:4, whichever fits the box) with
real context from the photo so the model's centre crop loses none of the object, and
written as a JPEG under the split's crop folder. Boxes whose shorter side is below
``min_side`` pixels are dropped (too little to classify). The crops of one photo share
a group key, so the splitter keeps them in one split; Roboflow exports name augmented
copies of one photo ``<photo>_jpg.rf.<hash>.jpg``, and those share the key too.

The dataset's own train/valid/test subsets are not kept: the crops are split again,
stratified and de-duplicated like every other source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from wastenet.config import from_dict
from wastenet.errors import ConfigError, WasteNetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
_ROBOFLOW_COPY = re.compile(r"\.rf\.[0-9a-fA-F]+$")
CROP_QUALITY = 95  # JPEG quality of the written crops


@dataclass
class CropConfig:
    """How a box becomes a crop: ``margin`` (fraction of the box added on each side),
    ``min_side`` (pixels; smaller boxes are dropped) and ``aspect`` (width/height of the
    model input's landscape orientation; 0 keeps the box's own aspect)."""

    margin: float = 0.15
    min_side: int = 32
    aspect: float = 4 / 3

    def validate(self, where: str) -> None:
        if not 0.0 <= self.margin <= 2.0:
            raise ConfigError(f"{where}.margin must be between 0 and 2, not {self.margin}")
        if self.min_side < 1:
            raise ConfigError(f"{where}.min_side must be at least 1 pixel, not {self.min_side}")
        if self.aspect != 0 and not 0.2 <= self.aspect <= 5.0:
            raise ConfigError(f"{where}.aspect must be 0 (keep) or in [0.2, 5], not {self.aspect}")


@dataclass(frozen=True)
class Box:
    """One labelled box in pixels of its photo: x0, y0 inclusive; x1, y1 exclusive."""

    cls: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def min_side(self) -> int:
        return min(self.x1 - self.x0, self.y1 - self.y0)


@dataclass
class DetectionPhoto:
    """A photo with its label file, the subset it came from and its group key."""

    image: Path
    labels: Path
    subset: str
    group: str


@dataclass
class CropRecord:
    """A crop written for one box (or a box that was dropped, with ``dropped`` set)."""

    photo: DetectionPhoto
    index: int  # line number of the box in the label file
    cls_name: str
    box: Box
    crop_box: tuple[int, int, int, int] = (0, 0, 0, 0)
    path: Path | None = None
    dropped: str = ""


@dataclass
class DetectionIndex:
    records: list[CropRecord] = field(default_factory=list)
    unlabelled_photos: list[str] = field(default_factory=list)
    bad_lines: list[dict] = field(default_factory=list)


def photo_group(image: Path) -> str:
    """The key shared by all copies of one photo (Roboflow's ``.rf.<hash>`` removed)."""
    return _ROBOFLOW_COPY.sub("", image.stem)


def read_class_names(root: Path) -> list[str]:
    """Class names by id from ``data.yaml`` (YOLO/Roboflow) in the dataset root."""
    import yaml

    for name in ("data.yaml", "data.yml"):
        path = root / name
        if path.is_file():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
            names = data.get("names") if isinstance(data, dict) else None
            if isinstance(names, dict):  # {0: Cable, 1: ...}
                names = [names[k] for k in sorted(names)]
            if not isinstance(names, list) or not names:
                raise ConfigError(f"{path}: no 'names' list of classes")
            return [str(n) for n in names]
    raise ConfigError(f"{root}: no data.yaml with class names; list them under 'names:'")


def find_photos(root: Path) -> list[DetectionPhoto]:
    """Every ``<subset>/images/<photo>`` with its ``<subset>/labels/<photo>.txt``, sorted."""
    photos = []
    for images in sorted(root.glob("*/images")) + sorted(root.glob("images")):
        subset = images.parent.name if images.parent != root else ""
        labels_dir = images.parent / "labels"
        for image in sorted(images.iterdir()):
            if image.suffix.lower() not in IMAGE_SUFFIXES or image.name.startswith("."):
                continue
            photos.append(
                DetectionPhoto(image, labels_dir / f"{image.stem}.txt", subset, photo_group(image))
            )
    if not photos:
        raise WasteNetError(f"{root}: no <subset>/images/ folders with photos (YOLO layout)")
    return photos


def parse_yolo_line(line: str, width: int, height: int, n_classes: int) -> Box:
    """A YOLO box (``cls cx cy w h``, normalised) or polygon (``cls x1 y1 x2 y2 ...``)."""
    parts = line.split()
    if len(parts) < 5 or len(parts) % 2 == 0:
        raise ValueError(f"expected 'class cx cy w h' or a polygon, got {len(parts)} fields")
    cls = int(parts[0])
    if not 0 <= cls < n_classes:
        raise ValueError(f"class id {cls} outside 0..{n_classes - 1}")
    values = [float(v) for v in parts[1:]]
    if len(values) == 4:
        cx, cy, bw, bh = values
        x0, x1, y0, y1 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
    else:
        xs, ys = values[0::2], values[1::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    x0, y0 = max(0.0, x0) * width, max(0.0, y0) * height
    x1, y1 = min(1.0, x1) * width, min(1.0, y1) * height
    box = Box(cls, round(x0), round(y0), round(x1), round(y1))
    if box.x1 <= box.x0 or box.y1 <= box.y0:
        raise ValueError("empty box")
    return box


def crop_window(box: Box, width: int, height: int, cfg: CropConfig) -> tuple[int, int, int, int]:
    """The box grown by the margin, widened to the model aspect, kept inside the photo."""
    from wastenet.preprocess import object_window

    return object_window((box.x0, box.y0, box.x1, box.y1), width, height, cfg.margin, cfg.aspect)


def crop_path(crops_dir: Path, photo: DetectionPhoto, index: int) -> Path:
    folder = crops_dir / photo.subset if photo.subset else crops_dir
    return folder / f"{photo.image.stem}__{index}.jpg"


def _write_crop(rgb, window: tuple[int, int, int, int], path: Path) -> None:
    from PIL import Image

    x0, y0, x1, y1 = window
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(rgb[y0:y1, x0:x1]).save(tmp, format="JPEG", quality=CROP_QUALITY)
    tmp.replace(path)


def _is_fresh(path: Path, photo: DetectionPhoto) -> bool:
    """A crop newer than its photo and label file is reused (crops are deterministic)."""
    if not path.is_file():
        return False
    made = path.stat().st_mtime
    return made >= photo.image.stat().st_mtime and made >= photo.labels.stat().st_mtime


def _photo_records(
    photo: DetectionPhoto, names: list[str], cfg: CropConfig, crops_dir: Path, index
) -> None:
    """Read one photo's labels and write its crops (or reuse fresh ones)."""
    from wastenet.imageio import open_checked, read_rgb

    try:
        with open_checked(photo.image) as img:  # header only; over the pixel budget: skipped
            width, height = img.size
    except (OSError, WasteNetError) as exc:
        index.bad_lines.append({"file": str(photo.image), "line": 0, "reason": str(exc)})
        return
    rgb = None
    for k, line in enumerate(photo.labels.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            box = parse_yolo_line(line, width, height, len(names))
        except ValueError as exc:
            index.bad_lines.append({"file": str(photo.labels), "line": k + 1, "reason": str(exc)})
            continue
        record = CropRecord(photo, k, names[box.cls], box)
        index.records.append(record)
        if box.min_side < cfg.min_side:
            record.dropped = f"box shorter side {box.min_side} px < min_side {cfg.min_side}"
            continue
        record.crop_box = crop_window(box, width, height, cfg)
        record.path = crop_path(crops_dir, photo, k)
        if not _is_fresh(record.path, photo):
            if rgb is None:
                rgb = read_rgb(photo.image)
            _write_crop(rgb, record.crop_box, record.path)


def index_detection(
    root: Path, names: list[str], cfg: CropConfig, crops_dir: Path, progress: bool = False
) -> DetectionIndex:
    """Every box of every photo under root, its crop written to crops_dir (in sorted order)."""
    index = DetectionIndex()
    photos = find_photos(root)
    if progress:
        from tqdm import tqdm

        photos = tqdm(photos, desc=f"crops {root.name}", unit="photo")
    for photo in photos:
        if not photo.labels.is_file():
            index.unlabelled_photos.append(str(photo.image))
            continue
        _photo_records(photo, names, cfg, crops_dir, index)
    return index


def crop_config(data: dict | None, where: str) -> CropConfig:
    cfg = from_dict(CropConfig, data or {}, where)
    cfg.validate(where)
    return cfg


def largest_free_rectangle(occupied: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) in cells of the largest all-free axis-aligned rectangle of a grid."""
    rows, cols = occupied.shape
    heights = np.zeros(cols, dtype=int)
    best, best_area = (0, 0, 0, 0), 0
    for y in range(rows):
        heights = np.where(occupied[y], 0, heights + 1)
        stack: list[int] = []
        for x in range(cols + 1):
            h = heights[x] if x < cols else 0
            while stack and heights[stack[-1]] >= h:
                top = stack.pop()
                left = stack[-1] + 1 if stack else 0
                area = int(heights[top]) * (x - left)
                if area > best_area:
                    best_area = area
                    best = (left, y - int(heights[top]) + 1, x, y + 1)
            stack.append(x)
    return best


def background_window(
    boxes: list[Box], width: int, height: int, min_share: float = 0.35, cells: int = 32
) -> tuple[int, int, int, int] | None:
    """The largest region of a photo that touches no box, if both its sides are at least
    ``min_share`` of the photo's: a real floor, table or shelf to paste objects onto."""
    occupied = np.zeros((cells, cells), dtype=bool)
    for b in boxes:
        x0, x1 = int(b.x0 * cells / width), int(np.ceil(b.x1 * cells / width))
        y0, y1 = int(b.y0 * cells / height), int(np.ceil(b.y1 * cells / height))
        occupied[y0:y1, x0:x1] = True
    cx0, cy0, cx1, cy1 = largest_free_rectangle(occupied)
    if (cx1 - cx0) < min_share * cells or (cy1 - cy0) < min_share * cells:
        return None
    sx, sy = width / cells, height / cells
    return round(cx0 * sx), round(cy0 * sy), round(cx1 * sx), round(cy1 * sy)


def write_backgrounds(
    root: Path, names: list[str], out: Path, min_share: float = 0.35, progress: bool = False
) -> dict:
    """Cut each labelled photo's largest box-free region into ``out`` (one JPEG a photo,
    one photo per group: Roboflow copies would repeat it)."""
    from wastenet.imageio import open_checked, read_rgb

    photos = find_photos(root)
    if progress:
        from tqdm import tqdm

        photos = tqdm(photos, desc=f"backgrounds {root.name}", unit="photo")
    seen: set[str] = set()
    too_large: list[str] = []
    written = skipped = 0
    out.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        if photo.group in seen or not photo.labels.is_file():
            continue
        seen.add(photo.group)
        try:
            with open_checked(photo.image) as img:  # header only: the pixel budget
                width, height = img.size
        except WasteNetError as exc:  # over the budget: never decoded, listed
            too_large.append(f"{photo.image}: {exc}")
            continue
        lines = [ln for ln in photo.labels.read_text().splitlines() if ln.strip()]
        try:
            boxes = [parse_yolo_line(ln, width, height, len(names)) for ln in lines]
        except ValueError:  # an unreadable line may hide an item: no background from it
            skipped += 1
            continue
        window = background_window(boxes, width, height, min_share)
        if window is None:
            skipped += 1
            continue
        _write_crop(read_rgb(photo.image), window, out / f"{photo.group}.jpg")
        written += 1
    return {
        "photos": len(seen),
        "written": written,
        "skipped": skipped,
        "too_large": too_large,
        "out": str(out),
    }
