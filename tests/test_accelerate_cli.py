"""`wastenet export / verify / bench` on a real (tiny-input) Lite0 bundle."""

from __future__ import annotations

import hashlib
import json

import pytest

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.errors import ExitCode
from wastenet.meta import BundleMeta, file_sha256

pytest.importorskip("timm")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from wastenet.data.manifest import Item, Manifest
    from wastenet.models import create_model, save_bundle

    root = tmp_path_factory.mktemp("cli")
    images = make_image_folder(root / "imgs", per_class=4)
    model = create_model("efficientnet_lite0", len(CLASSES), pretrained=False)
    meta = BundleMeta("efficientnet_lite0", list(CLASSES), [48, 64], [0.5] * 3, [0.5] * 3)
    bundle = save_bundle(model, meta, root / "m.safetensors")
    items = []
    for i, path in enumerate(sorted(images.rglob("*.jpg"))):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        split = "test" if i % 2 else "train"
        items.append(Item(str(path), "tiny", (path.parent.name,), digest, split))
    manifest = Manifest(all_items=items).save(root / "manifest.json")
    return root, bundle, manifest


def test_export_list_shows_every_row(capsys):
    assert main(["export", "--list"]) == 0
    out = capsys.readouterr().out
    for name in ("torch", "onnx", "ort-int8", "openvino-int8", "tensorrt-int8"):
        assert f"| {name} |" in out
    assert "1 << 25" in out or "33554432" in out


def test_export_verify_bench(workdir, capsys):
    root, bundle, manifest = workdir
    out = root / "out"
    args = ["export", str(bundle), "--format", "onnx", "--format", "ort-int8",
            "--format", "tensorrt-fp16", "--out", str(out),
            "--calib-manifest", str(manifest), "--calib-count", "8"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "tensorrt-fp16" in printed and "skipped" in printed
    record = json.loads((out / "export.json").read_text())["artifacts"]
    assert record["m.onnx"]["source_hash"] == file_sha256(bundle)
    assert record["m.int8.onnx"]["record"]["calibration_images"] == 8

    # FP32 ONNX matches its source exactly; -1 points allowed drop makes it fail loudly.
    assert main(["verify", str(out / "m.onnx"), "--manifest", str(manifest)]) == 0
    report = json.loads((out / "verify.json").read_text())["rows"][0]
    assert report["agreement"] == 100.0 and report["max_prob_diff"] < 1e-4
    assert report["reference"] == str(bundle.resolve())
    fail = ["verify", str(out / "m.onnx"), "--manifest", str(manifest), "--max-drop", "-1"]
    assert main(fail) == ExitCode.CHECK_FAILED
    # several splits pooled (this tiny manifest has train and test, no val)
    pooled = [
        "verify",
        str(out / "m.onnx"),
        "--manifest",
        str(manifest),
        "--split",
        "train",
        "test",
    ]
    assert main(pooled) == 0
    n_pooled = json.loads((out / "verify.json").read_text())["rows"][0]["images"]
    assert (
        main(["verify", str(out / "m.onnx"), "--manifest", str(manifest), "--split", "train"]) == 0
    )
    n_train = json.loads((out / "verify.json").read_text())["rows"][0]["images"]
    assert n_pooled == n_train + report["images"] and n_train > 0

    assert main(["bench", str(bundle), str(out / "m.onnx"), "--threads", "1",
                 "--warmup", "2", "--iters", "5", "--out", str(root / "bench")]) == 0  # fmt: skip
    rows = json.loads((root / "bench" / "bench.json").read_text())["rows"]
    assert [r["format"] for r in rows] == ["torch", "onnx"]
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["peak_rss_mb"] > 10
        assert row["size_mb"] > 1 and row["ips_p50"] == pytest.approx(1000 / row["p50_ms"])
    assert (root / "bench" / "bench.png").stat().st_size > 1000


def test_errors_print_one_line(workdir, capsys):
    root, bundle, manifest = workdir
    assert main(["export", str(bundle), "--format", "onnx", "--workspace", "5"]) == 2
    assert "apply to none" in capsys.readouterr().err
    assert main(["export", str(bundle), "--format", "ort-int8", "--out", str(root / "x")]) == 2
    assert "real training images" in capsys.readouterr().err
    other = root / "other.safetensors"
    other.write_bytes(bundle.read_bytes()[:-8] + b"\0" * 8)
    onnx_path = root / "out" / "m.onnx"
    if not onnx_path.exists():
        assert main(["export", str(bundle), "--format", "onnx", "--out", str(root / "out")]) == 0
    code = main(["verify", str(onnx_path), "--manifest", str(manifest), "--reference", str(other)])
    assert code == 2
    assert "another model" in capsys.readouterr().err


def test_engines_from_an_exported_onnx_without_its_bundle(workdir, tmp_path):
    """The bundled model ships as ONNX only: INT8 engines are made from that ONNX, keep
    its card, and verify compares them with it (the engine they replace)."""
    from wastenet.accelerate import load_engine

    root, bundle, manifest = workdir
    first = tmp_path / "first"
    assert main(["export", str(bundle), "--format", "onnx", "--out", str(first)]) == 0
    shipped = tmp_path / "bundle"
    shipped.mkdir()
    onnx_path = shipped / "w.onnx"
    onnx_path.write_bytes((first / "m.onnx").read_bytes())  # no .safetensors beside it
    args = ["export", str(onnx_path), "--format", "openvino-int8", "--format", "ort-int8",
            "--calib-manifest", str(manifest), "--calib-count", "8"]  # fmt: skip
    assert main(args) == 0
    with load_engine(onnx_path) as fp32, load_engine(shipped / "w.int8.xml") as int8:
        assert int8.meta.source_hash == fp32.meta.source_hash == file_sha256(bundle)
        assert int8.meta.labels == fp32.meta.labels
    verify = ["verify", str(shipped / "w.int8.xml"), "--manifest", str(manifest),
              "--max-drop", "100"]  # fmt: skip
    assert main(verify) == 0
    row = json.loads((shipped / "verify.json").read_text())["rows"][0]
    assert row["reference"] == str(onnx_path.resolve()) and row["images"] > 0
    assert main([*verify, "--reference", str(bundle)]) == 0  # the true bundle still is one
    # the ONNX cannot re-make itself (or the torch bundle)
    assert main(["export", str(onnx_path), "--format", "onnx"]) == ExitCode.BAD_INPUT
