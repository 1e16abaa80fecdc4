"""Every bad-input kind is reported (or converted) and the good files still reach the manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image, make_image_folder
from wastenet.data.manifest import load_manifest
from wastenet.data.split import build_split
from wastenet.data.validate import check_file, write_report
from wastenet.imageio import read_rgb


def _jpeg_bytes(seed: int = 0) -> bytes:
    buf = io.BytesIO()
    make_image((40, 200, 90), (64, 48), seed=seed).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _bad(kind: str, folder: Path) -> Path:
    """Write one file of the given bad kind into folder; return its path."""
    if kind == "corrupt":
        data = _jpeg_bytes(1)
        dht = data.find(b"\xff\xc4")  # overwrite the Huffman table with junk
        path = folder / "corrupt.jpg"
        path.write_bytes(data[: dht + 4] + b"\xff" * 30 + data[dht + 34 :])
    elif kind == "truncated":
        path = folder / "truncated.jpg"
        path.write_bytes(_jpeg_bytes(2)[:-400])
    elif kind == "zero":
        path = folder / "zero.jpg"
        path.write_bytes(b"")
    elif kind == "text":
        path = folder / "notes.jpg"
        path.write_text("this is a text file, not a photo\n")
    elif kind == "gray":
        path = folder / "gray.jpg"
        make_image((90, 90, 90), seed=3).convert("L").save(path)
    elif kind == "cmyk":
        path = folder / "cmyk.jpg"
        make_image((30, 60, 220), seed=4).convert("CMYK").save(path, "JPEG")
    elif kind == "rgba":
        path = folder / "alpha.png"
        img = make_image((150, 100, 50), seed=5).convert("RGBA")
        arr = np.asarray(img).copy()
        arr[:10, :, 3] = 0  # transparent band -> white after compositing
        Image.fromarray(arr).save(path)
    elif kind == "exif":
        path = folder / "rotated.jpg"
        img = make_image((250, 250, 240), (64, 48), seed=6)
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 CW on display
        img.save(path, exif=exif.tobytes())
    else:
        raise AssertionError(kind)
    return path


REJECTED = {
    "corrupt": ("corrupt",),
    "truncated": ("truncated",),
    "zero": ("zero-byte",),
    "text": ("not an image",),
}
CONVERTED = {
    "gray": "grayscale",
    "cmyk": "CMYK -> RGB",
    "rgba": "alpha",
    "exif": "EXIF orientation 6",
}


@pytest.mark.parametrize("kind", sorted(REJECTED))
def test_unusable_file_is_rejected_with_reason(tmp_path, kind):
    root = make_image_folder(tmp_path / "src", per_class=4)
    bad = _bad(kind, root / "glass")
    check = check_file(bad)
    assert check.status == "rejected"
    assert check.reason.startswith(REJECTED[kind]), check.reason
    result = build_split([root], workers=1, progress=False)
    paths = {it.path for it in result.manifest.items()}
    assert str(bad.resolve()) not in paths
    assert len(paths) == 20  # every good file survives
    report = write_report(result.validation["checks"], {}, tmp_path)
    assert [r["path"] for r in report["rejected"]] == [str(bad.resolve())]
    saved = json.loads((tmp_path / "validation.json").read_text())
    assert saved["rejected"][0]["reason"] == check.reason
    assert bad.name in (tmp_path / "validation.txt").read_text()


@pytest.mark.parametrize("kind", sorted(CONVERTED))
def test_odd_but_usable_file_is_converted_and_kept(tmp_path, kind):
    root = make_image_folder(tmp_path / "src", per_class=4)
    odd = _bad(kind, root / "paper")
    check = check_file(odd)
    assert check.status == "converted"
    assert any(CONVERTED[kind] in what for what in check.converted), check.converted
    rgb = read_rgb(odd)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    if kind == "exif":
        assert rgb.shape[:2] == (64, 48)  # 64x48 stored, shown portrait after rotation
    if kind == "rgba":
        assert (rgb[:10] == 255).all()  # transparent pixels composited on white
    result = build_split([root], workers=1, progress=False)
    result.manifest.save(tmp_path / "m.json")
    items = {it.path: it for it in load_manifest(tmp_path / "m.json").items()}
    assert len(items) == 21
    assert items[str(odd.resolve())].converted == tuple(check.converted)
