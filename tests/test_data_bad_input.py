"""Hostile and malformed input to the data stage: decompression bombs, bad CLI values,
damaged manifests, symlink loops, unreadable folders, malformed latency logs.

Every user error is one clear line on stderr and exit 2, never a traceback; a bomb is
refused from its header and never decoded.
"""

from __future__ import annotations

import json
import os
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.data.split import build_split
from wastenet.data.validate import check_file
from wastenet.errors import WasteNetError
from wastenet.imageio import MAX_PIXELS, read_rgb


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, width: int = 13000, height: int = 13000, full: bool = True) -> Path:
    """A valid 1-bit grayscale PNG of width x height zeros: ~20 KB on disk, 507 MB as RGB.

    Written by hand, row by row, so making it never holds the image in memory. With
    ``full=False`` the IDAT is a stub: enough for a header read, nothing to decode.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    if full:
        row = b"\0" * (1 + (width + 7) // 8)
        z = zlib.compressobj(9)
        body = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    else:
        body = zlib.compress(b"\0" * 16)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )
    return path


@pytest.fixture
def bomb(tmp_path) -> Path:
    return write_png_bomb(tmp_path / "bomb.png")


@pytest.fixture
def no_big_decode(monkeypatch):
    """Fail the test if anything decodes an image over the pixel budget."""
    original = ImageFile.ImageFile.load

    def guarded(self):
        assert self.size[0] * self.size[1] <= MAX_PIXELS, f"decoded a {self.size} image"
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", guarded)


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wastenet: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


# --- decompression bombs -----------------------------------------------------------------


def test_bomb_is_small_on_disk_and_huge_in_its_header(bomb):
    assert bomb.stat().st_size < 300_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(bomb) as img:
        assert img.size == (13000, 13000)  # PIL only warns: the budget must be ours


def test_read_rgb_refuses_a_bomb_without_decoding(bomb, no_big_decode):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(WasteNetError) as exc:
            read_rgb(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 5.0
    assert peak < 20_000_000
    text = str(exc.value)
    assert str(bomb) in text
    assert f"too large: 13000 x 13000 pixels over the budget of {MAX_PIXELS}" in text


def test_a_header_past_pils_own_limit_gets_the_same_reason(tmp_path, no_big_decode):
    """PIL itself raises above 2 x its MAX_IMAGE_PIXELS; the reason stays ours."""
    huge = write_png_bomb(tmp_path / "huge.png", 30000, 30000, full=False)
    with pytest.raises(WasteNetError, match="too large: .* over the budget of"):
        read_rgb(huge)
    check = check_file(huge)
    assert check.status == "rejected" and check.reason.startswith("too large: ")


def test_validation_rejects_a_bomb_with_its_reason(bomb, no_big_decode):
    check = check_file(bomb)
    assert check.status == "rejected"
    assert check.reason == f"too large: 13000 x 13000 pixels over the budget of {MAX_PIXELS}"
    assert check.phashes == []


def test_normal_images_read_exactly_as_before(tmp_path):
    """The budget check changes nothing for an image under it (alpha, palette, EXIF)."""
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA")
    rgba.save(tmp_path / "a.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    rgb.save(tmp_path / "r.jpg", exif=exif)
    rgb.convert("P").save(tmp_path / "p.png")
    for name in ("a.png", "r.jpg", "p.png"):
        with Image.open(tmp_path / name) as img:  # the reader before the budget check
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA"):
                rgba_img = img.convert("RGBA")
                white = Image.new("RGBA", rgba_img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(white, rgba_img)
            expected = np.asarray(img.convert("RGB"))
        np.testing.assert_array_equal(read_rgb(tmp_path / name), expected)


def test_split_on_a_folder_with_a_bomb_lists_it_as_rejected(tmp_path, capsys, no_big_decode):
    root = make_image_folder(tmp_path / "src", per_class=3, size_wh=(48, 64))
    bomb = write_png_bomb(root / "glass" / "bomb.png")
    out = tmp_path / "out"
    code, stdout, err = run_cli(["data", "split", root, "--out", out, "--workers", "1"], capsys)
    assert code == 0, err
    reason = f"too large: 13000 x 13000 pixels over the budget of {MAX_PIXELS}"
    assert f"REJECTED {bomb.resolve()}: {reason}" in (out / "validation.txt").read_text()
    assert "REJECTED" in stdout and "DecompressionBomb" not in err
    rejected = json.loads((out / "validation.json").read_text())["rejected"]
    assert rejected == [{"path": str(bomb.resolve()), "reason": reason}]
    manifest = json.loads((out / "manifest.json").read_text())
    assert all("bomb" not in it["path"] for it in manifest["items"])


# --- data CLI inputs ---------------------------------------------------------------------


def test_split_out_an_existing_file_fails_before_validation(tmp_path, capsys, monkeypatch):
    root = make_image_folder(tmp_path / "src", per_class=2, size_wh=(48, 64))
    target = tmp_path / "out.txt"
    target.write_text("not a folder")

    def no_validation(*args, **kwargs):
        raise AssertionError("validation ran before --out was checked")

    monkeypatch.setattr("wastenet.data.split.check_files", no_validation)
    code, _, err = run_cli(["data", "split", root, "--out", target], capsys)
    assert_one_line_error(code, err, "--out", "not a folder")
    code, _, err = run_cli(["data", "split", root, "--out", target / "sub"], capsys)
    assert_one_line_error(code, err, "--out", "is a file")


def test_split_rejects_non_finite_ratios(tmp_path, capsys):
    root = make_image_folder(tmp_path / "src", per_class=2, size_wh=(48, 64))
    for ratios in (["nan", "0.5", "0.5"], ["inf", "0", "0"]):
        args = ["data", "split", root, "--out", tmp_path / "out", "--ratios", *ratios]
        code, _, err = run_cli(args, capsys)
        assert_one_line_error(code, err, "--ratios", "finite")
    assert not (tmp_path / "out" / "manifest.json").exists()


@pytest.fixture(scope="module")
def split_manifest(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("split")
    root = make_image_folder(tmp / "src", per_class=2, size_wh=(48, 64))
    result = build_split([root], folds=0, workers=1, progress=False)
    return result.manifest.save(tmp / "manifest.json")


@pytest.fixture
def manifest_path(split_manifest, tmp_path) -> Path:
    path = tmp_path / "manifest.json"
    path.write_text(split_manifest.read_text())
    return path


@pytest.mark.parametrize("keep_hash", [True, False])
@pytest.mark.parametrize("bad", [None, "", "abc", "Z" * 64])
def test_manifest_item_without_sha256_is_refused(manifest_path, capsys, bad, keep_hash):
    data = json.loads(manifest_path.read_text())
    if not keep_hash:
        del data["hash"]
    item = data["items"][1]
    if bad is None:
        del item["sha256"]
    else:
        item["sha256"] = bad
    manifest_path.write_text(json.dumps(data))
    code, _, err = run_cli(["data", "check", manifest_path], capsys)
    assert_one_line_error(code, err, "items[1]", item["path"], "sha256")


def test_preview_out_must_be_an_image_file(tmp_path, capsys):
    root = make_image_folder(tmp_path / "src", per_class=2, size_wh=(48, 64))
    folder = tmp_path / "grids"
    folder.mkdir()
    code, _, err = run_cli(["data", "preview", root, "--out", folder, "--n", "2"], capsys)
    assert_one_line_error(code, err, "--out", "folder", ".png")
    code, _, err = run_cli(["data", "preview", root, "--out", tmp_path / "grid"], capsys)
    assert_one_line_error(code, err, "--out", ".png")
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(["data", "preview", root, "--out", tmp_path / "file" / "g.png"], capsys)
    assert_one_line_error(code, err, "cannot write the preview image")


def test_symlink_loops_and_unreadable_folders_are_reported(tmp_path, capsys, monkeypatch):
    root = make_image_folder(tmp_path / "src", per_class=3, size_wh=(48, 64))
    (root / "glass" / "loop").symlink_to(root / "glass", target_is_directory=True)
    (root / "metal" / "self").symlink_to(root / "metal" / "self")  # never resolves
    (root / "paper" / "gone.jpg").symlink_to(root / "paper" / "missing.jpg")
    locked = root / "plastic" / "locked"
    locked.mkdir()
    (root / "plastic" / "plastic0.jpg").rename(locked / "hidden0.jpg")
    locked.chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the folder unreadable by hand
        real_scandir = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real_scandir(path)

        monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    try:
        code, stdout, err = run_cli(["data", "split", root, "--out", out, "--workers", "1"], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 0, err
    text = (out / "validation.txt").read_text()
    assert f"SKIPPED {root / 'glass' / 'loop'}: symlink loop" in text
    assert f"SKIPPED {root / 'metal' / 'self'}: symlink loop" in text
    assert f"SKIPPED {root / 'paper' / 'gone.jpg'}: broken symlink" in text
    assert f"SKIPPED {locked}: unreadable (Permission denied)" in text
    assert "SKIPPED" in stdout
    skipped = json.loads((out / "validation.json").read_text())["skipped_folders"]
    assert len(skipped) == 4 and {s["source"] for s in skipped} == {"src"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["items"]) == 3 * len(CLASSES) - 1  # glass once, through no loop


# --- wastenet latency --run ----------------------------------------------------------------


def _write_run(run_dir: Path, timing_lines: list[str], act_lines: list[str]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "timings.jsonl").write_text("".join(line + "\n" for line in timing_lines))
    (run_dir / "actuations.jsonl").write_text("".join(line + "\n" for line in act_lines))
    return run_dir


def test_latency_skips_and_counts_malformed_lines(tmp_path, capsys):
    frames = [json.dumps({"i": i, "t": i / 20, "present": True}) for i in range(40)]
    frames[5:5] = ["{not json", json.dumps({"i": 99}), json.dumps([1, 2]), '{"t": "soon"}']
    frames.append('{"i": 40, "t": 2.0, "pres')  # a line cut short by a crash
    act = {"onset_t": 0.1, "command_t": 0.45, "servo_delay_s": 0.6, "ok": True}
    acts = [json.dumps(act), "garbage", json.dumps({"ok": True})]
    run_dir = _write_run(tmp_path / "run", frames, acts)
    code, stdout, err = run_cli(["latency", "--run", run_dir], capsys)
    assert code == 0, err
    assert "skipped malformed lines: 5 in timings.jsonl, 2 in actuations.jsonl" in stdout
    assert "1 actuations" in stdout and "20.0 inferences/s" in stdout


def test_latency_on_an_unreadable_log_is_one_clear_error(tmp_path, capsys):
    run_dir = _write_run(tmp_path / "run", ["{oops", "\x00\x01"], ["{}"])
    code, _, err = run_cli(["latency", "--run", run_dir], capsys)
    assert_one_line_error(code, err, "timings.jsonl", "no readable frame records", "2 malformed")
    (run_dir / "timings.jsonl").write_bytes(b"\xff\xfe\n" + json.dumps({"t": 0}).encode() + b"\n")
    (run_dir / "run.json").write_text("[1, 2")
    code, _, err = run_cli(["latency", "--run", run_dir], capsys)
    assert_one_line_error(code, err, "run.json")
