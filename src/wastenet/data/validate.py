"""Check every file once: usable, usable after conversion, or rejected with a reason.

One pass per file (run in a pool of 2 processes) does everything the split needs:
the pixel budget read from the header (an image over ``MAX_PIXELS`` is rejected, never
decoded), PIL ``verify`` (structure) and a full ``load`` (catches truncation), the mode
and EXIF checks, the content sha256, and the dihedral perceptual hashes for near-duplicates.
Nothing is dropped silently: a rejected file is listed with its reason.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from wastenet.data.dedup import dihedral_phashes
from wastenet.errors import WasteNetError
from wastenet.imageio import open_checked, read_rgb

MIN_SIDE = 32  # smaller images carry too little to classify
EXIF_ORIENTATION = 0x0112


@dataclass
class FileCheck:
    """The outcome for one file; ``status`` is ok, converted or rejected."""

    path: str
    status: str
    reason: str = ""
    converted: list[str] = field(default_factory=list)
    sha256: str = ""
    size_wh: tuple[int, int] = (0, 0)
    phashes: list[list[int]] = field(default_factory=list)  # [phash, dhash] x 8 variants


def _conversions(img: Image.Image, path: Path) -> list[str]:
    done = []
    mode = img.mode
    if mode in ("L", "1", "I", "I;16", "F"):
        done.append(f"grayscale ({mode}) -> RGB")
    elif mode == "LA":
        done.append("grayscale with alpha -> RGB, alpha composited on white")
    elif mode == "CMYK":
        done.append("CMYK -> RGB")
    elif mode == "RGBA" or (mode == "P" and "transparency" in img.info):
        done.append(f"alpha ({mode}) composited on white -> RGB")
    elif mode == "P":
        done.append("palette -> RGB")
    elif mode not in ("RGB",):
        done.append(f"{mode} -> RGB")
    orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    if orientation not in (1, None):
        done.append(f"EXIF orientation {orientation} applied")
    fmt = (img.format or "").lower()
    ext = path.suffix.lower().lstrip(".")
    aliases = {"jpg": "jpeg", "jpe": "jpeg", "tif": "tiff"}
    if fmt and ext and aliases.get(ext, ext) != fmt:
        done.append(f"{img.format} content in a .{ext} file (read by content)")
    return done


def check_file(path: str | Path) -> FileCheck:
    """Validate one file; never raises for a bad image (the reason goes in the result)."""
    path = Path(path)
    result = FileCheck(path=str(path), status="rejected")
    try:
        data = path.read_bytes()
    except OSError as exc:
        result.reason = f"unreadable ({exc.strerror})"
        return result
    if not data:
        result.reason = "zero-byte file"
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with open_checked(io.BytesIO(data)) as img:  # header only: the pixel budget
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                result.converted = _conversions(img, path)
                result.size_wh = img.size
    except WasteNetError as exc:  # over the pixel budget: rejected without decoding
        result.reason = str(exc)
        return result
    except UnidentifiedImageError:
        result.reason = "not an image (unrecognised format)"
        return result
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        text = str(exc)
        kind = "truncated" if "truncat" in text.lower() else "corrupt"
        result.reason = f"{kind} ({text})"
        return result
    if min(result.size_wh) < MIN_SIDE:
        result.reason = f"too small ({result.size_wh[0]}x{result.size_wh[1]} < {MIN_SIDE} px)"
        return result
    try:
        rgb = read_rgb(path)  # the exact reader training uses must succeed too
    except WasteNetError as exc:
        result.reason = f"corrupt ({exc})"
        return result
    result.phashes = [[int(h) for h in row] for row in dihedral_phashes(rgb)]
    result.status = "converted" if result.converted else "ok"
    return result


def check_files(paths: list[Path], workers: int = 2, progress: bool = True) -> list[FileCheck]:
    """Validate files in a small process pool, results in input order."""
    paths = [str(p) for p in paths]
    if workers <= 1 or len(paths) < 64:
        return [check_file(p) for p in paths]
    chunk = max(8, len(paths) // (workers * 16))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = pool.map(check_file, paths, chunksize=chunk)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc="validate", unit="img")
        return list(results)


def write_report(checks: list[FileCheck], extra: dict, out_dir: Path) -> dict:
    """validation.json (every non-ok file, with its reason) and validation.txt (readable)."""
    rejected = [c for c in checks if c.status == "rejected"]
    converted = [c for c in checks if c.status == "converted"]
    report = {
        "files_checked": len(checks),
        "ok": sum(c.status == "ok" for c in checks),
        "converted": [{"path": c.path, "done": c.converted} for c in converted],
        "rejected": [{"path": c.path, "reason": c.reason} for c in rejected],
        **extra,
    }
    (out_dir / "validation.json").write_text(json.dumps(report, indent=1))
    (out_dir / "validation.txt").write_text(report_text(report))
    return report


def report_text(report: dict) -> str:
    lines = [
        f"files checked: {report['files_checked']}",
        f"ok: {report['ok']}  converted on read: {len(report['converted'])}  "
        f"rejected: {len(report['rejected'])}",
    ]
    kinds: dict[str, int] = {}
    for c in report["converted"]:
        for what in c["done"]:
            key = what.split(" (")[0] if "content in" not in what else "wrong extension"
            kinds[key] = kinds.get(key, 0) + 1
    for key, n in sorted(kinds.items()):
        lines.append(f"  converted: {key}: {n}")
    for r in report["rejected"]:
        lines.append(f"  REJECTED {r['path']}: {r['reason']}")
    for u in report.get("unknown_folders", []):
        lines.append(
            f"  UNKNOWN folder {u['folder']} ({u['files']} files): map it in a source YAML"
        )
    for u in report.get("ignored_folders", []):
        lines.append(f"  ignored folder {u['folder']} ({u['files']} files)")
    for s in report.get("stray_files", []):
        lines.append(f"  stray file outside any class folder: {s}")
    for s in report.get("skipped_folders", []):
        lines.append(f"  SKIPPED {s['path']}: {s['reason']}")
    for d in report.get("detection", []):
        lines.extend(detection_lines(d))
    return "\n".join(lines) + "\n"


def detection_lines(summary: dict) -> list[str]:
    """What a detection source kept and dropped, per dataset class."""
    lines = [f"detection source {summary['source']}: boxes per dataset class"]
    for name, c in summary["classes"].items():
        maps_to = c["maps_to"] if isinstance(c["maps_to"], str) else "+".join(c["maps_to"])
        lines.append(
            f"  {name} -> {maps_to}: {c['boxes']} boxes, {c['kept']} kept, "
            f"{c['too_small']} too small"
        )
    if summary["photos_without_labels"]:
        lines.append(f"  photos without a label file: {len(summary['photos_without_labels'])}")
    for b in summary["bad_label_lines"]:
        lines.append(f"  BAD label line {b['file']}:{b['line']}: {b['reason']}")
    return lines


def summarise_sizes(checks: list[FileCheck]) -> dict[str, int]:
    """How many usable images of each size: a quick look at a source's make-up."""
    sizes: dict[str, int] = {}
    for c in checks:
        if c.status != "rejected":
            key = f"{c.size_wh[0]}x{c.size_wh[1]}"
            sizes[key] = sizes.get(key, 0) + 1
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1])[:10])
