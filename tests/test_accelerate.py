"""Round trip over the format table: export a tiny model, reload, compare with the source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.accelerate import FORMATS, format_for_path, get_format, load_engine
from wastenet.accelerate.calibration import CalibrationSet, images_from_folder, images_from_manifest
from wastenet.classes import CLASSES
from wastenet.errors import ConfigError, ModelFileError
from wastenet.meta import BundleMeta

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

H, W = 48, 64
# Per-row tolerance: (max abs probability difference, minimum top-1 agreement)
TOLERANCE = {"fp32": (1e-4, 1.0), "fp16": (1e-2, 1.0), "int8": (0.15, 0.9)}
EXPORTABLE = [f.name for f in FORMATS if f.name != "torch"]


def tiny_model():
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, len(CLASSES)),
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from wastenet.accelerate.export import CalibSource, export_model

    root = tmp_path_factory.mktemp("acc")
    images = make_image_folder(root / "imgs", per_class=6)
    meta = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3, source_hash="ab" * 32)
    model = tiny_model()
    results = export_model(
        model, meta, EXPORTABLE, root / "out", options={"calib_count": 20},
        calib=CalibSource(folder=images),
    )  # fmt: skip
    calib = CalibrationSet(images_from_folder(images), meta)
    x = calib.stacked()  # real images through the bundle's preprocessing
    with torch.no_grad():
        ref = torch.softmax(model(torch.from_numpy(x)), 1).numpy()
    return {r.format: r for r in results}, meta, x, ref


def test_table_suffixes_pick_the_longest_match():
    assert len({f.suffix for f in FORMATS}) == len(FORMATS)
    assert format_for_path("m.int8.onnx").name == "ort-int8"
    assert format_for_path("m.fp16.onnx").name == "onnx-fp16"
    assert format_for_path("m.onnx").name == "onnx"
    assert format_for_path("m.int8.xml").name == "openvino-int8"
    assert format_for_path("best.safetensors").name == "torch"
    assert format_for_path("m.fp16.engine").name == "tensorrt-fp16"
    assert get_format("tensorrt-fp32").options["workspace"] == 1 << 25


def test_every_row_names_its_builder():
    from wastenet.accelerate.export import builder_for

    for fmt in FORMATS:
        if fmt.name == "torch":
            assert fmt.builder is None  # the bundle is the artifact
            with pytest.raises(ConfigError, match="no exporter"):
                builder_for(fmt)
        else:
            assert callable(builder_for(fmt)), fmt.name


def test_options_are_validated_against_the_row():
    assert get_format("ort-int8").validate({"calib_count": "50"})["calib_count"] == 50
    with pytest.raises(ConfigError, match="unknown option"):
        get_format("onnx").validate({"workspace": 1})
    with pytest.raises(ConfigError, match="calib_method"):
        get_format("ort-int8").validate({"calib_method": "random"})
    with pytest.raises(ConfigError, match="unknown format"):
        get_format("tflite")


@pytest.mark.parametrize("name", EXPORTABLE)
def test_round_trip(exported, name):
    results, meta, x, ref = exported
    result = results[name]
    if result.status == "skipped":
        pytest.skip(f"{name}: {result.reason}")
    assert result.status == "ok"
    engine = load_engine(result.path, threads=1)
    probs = engine.predict(x)
    assert probs.dtype == np.float32 and probs.shape == ref.shape
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-3)
    max_diff, min_agree = TOLERANCE[engine.format.precision]
    assert np.abs(probs - ref).max() <= max_diff
    assert np.mean(probs.argmax(1) == ref.argmax(1)) >= min_agree
    assert engine.meta == meta  # labels, size, mean/std and source_hash survive
    engine.close()


def test_unavailable_rows_are_reported_not_hidden(exported):
    results = exported[0]
    for fmt in FORMATS:
        if fmt.name != "torch" and fmt.unavailable_reason():
            assert results[fmt.name].status == "skipped"
            assert results[fmt.name].reason


def test_int8_records_excluded_layers(exported):
    record = exported[0]["ort-int8"].record
    assert record["calibration_images"] == 20
    assert any("Softmax" in n for n in record["excluded_nodes"])


def test_int8_needs_real_calibration_images(tmp_path):
    from wastenet.accelerate.export import export_model

    meta = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3)
    with pytest.raises(ConfigError, match="real training images"):
        export_model(tiny_model(), meta, ["ort-int8"], tmp_path)


def test_exclude_first_and_last_keeps_them_float(tmp_path, exported):
    from wastenet.accelerate.quantize import export_ort_int8, graph_nodes

    results, meta, _, _ = exported
    images = make_image_folder(tmp_path / "imgs", per_class=2)
    calib = CalibrationSet(images_from_folder(images), meta)
    out = tmp_path / "m.int8.onnx"
    rec = export_ort_int8(results["onnx"].path, out, calib, "entropy", "first,last")
    assert len(rec["excluded_nodes"]) == 3  # softmax + stem conv + classifier
    nodes = graph_nodes(out)
    stem = [n for n in nodes if n.op_type == "Conv"][0]
    producers = {o: n.op_type for n in nodes for o in n.output}
    assert producers.get(stem.input[1]) != "DequantizeLinear"  # float weights
    assert load_engine(out).meta == meta


@pytest.mark.parametrize("name", ["openvino", "openvino-int8"])
def test_openvino_compiles_each_batch_size_it_meets(exported, name):
    result = exported[0][name]
    if result.status != "ok":
        pytest.skip(result.reason)
    from wastenet.accelerate.backends.openvino_backend import OpenVinoEngine

    x = exported[2]
    with load_engine(result.path) as engine:
        whole = engine.predict(x[:7])
        one_by_one = np.concatenate([engine.predict(x[i : i + 1]) for i in range(7)])
        for n in (2, 3, 4, 5, 6):  # more shapes than the engine keeps compiled
            np.testing.assert_allclose(engine.predict(x[:n]), whole[:n], atol=1e-5)
        assert len(engine._requests) == OpenVinoEngine.MAX_SHAPES
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)


def test_wrong_input_shape_is_a_clear_error(exported):
    engine = load_engine(exported[0]["onnx"].path)
    with pytest.raises(ModelFileError, match=r"expects input N x 3 x 48 x 64"):
        engine.predict(np.zeros((1, 3, 64, 48), np.float32))


def test_damaged_and_unknown_files(tmp_path, exported):
    src = exported[0]["onnx"].path
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(src.read_bytes()[:500])
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        load_engine(bad)
    xml = tmp_path / "bad.xml"
    xml.write_text("<net><broken")
    xml.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match="OpenVINO"):
        load_engine(xml)
    odd = tmp_path / "m.tflite"
    odd.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="unknown model file type"):
        load_engine(odd)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_engine(tmp_path / "missing.onnx")


def test_onnx_without_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.onnx"
    torch.onnx.export(tiny_model(), (torch.zeros(1, 3, H, W),), str(path), dynamo=False)
    with pytest.raises(ModelFileError, match="no WasteNet metadata"):
        load_engine(path)


def test_loads_without_torch(exported):
    """The deploy side: ONNX Runtime and OpenVINO engines with torch blocked."""
    results = exported[0]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from wastenet.accelerate import load_engine\n"
        "for p in sys.argv[1:]:\n"
        "    e = load_engine(p, threads=1)\n"
        "    y = e.predict(np.zeros((2, 3, e.meta.height, e.meta.width), np.float32))\n"
        "    assert y.shape == (2, 5), y.shape\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
        "print('ok')\n"
    )
    paths = [str(r.path) for r in results.values() if r.status == "ok"]
    proc = subprocess.run([sys.executable, "-c", code, *paths], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ok"


def test_find_reference_refuses_another_model(tmp_path, exported):
    from wastenet.accelerate.verify import find_reference

    meta = exported[1]
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not the source")
    with pytest.raises(ModelFileError, match="another model"):
        find_reference(Path("m.onnx"), meta, other)
    no_hash = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3)
    with pytest.raises(ModelFileError, match="no source_hash"):
        find_reference(Path("m.onnx"), no_hash)


def _tiny_manifest(root: Path, set_labels: bool = False) -> Path:
    """Half train, half val; with ``set_labels`` every paper item is labelled paper or
    cardboard (a coarse set label, as web-mixed's)."""
    import hashlib

    from wastenet.data.manifest import Item, Manifest

    images = make_image_folder(root / "imgs", per_class=6)
    items = []
    for i, path in enumerate(sorted(images.rglob("*.jpg"))):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        split = "val" if i % 2 else "train"
        labels = (path.parent.name,)
        if set_labels and labels == ("paper",):
            labels = ("cardboard", "paper")
        items.append(Item(str(path), "tiny", labels, digest, split))
    return Manifest(all_items=items).save(root / "manifest.json")


def test_nncf_validation_scores_as_verify_and_evaluate_do(tmp_path, exported):
    """NNCF's validation_fn, verify's and evaluate's accuracy are one scorer's numbers."""
    ov = pytest.importorskip("openvino")
    from wastenet.accelerate.openvino_export import ValidationSet, _compile
    from wastenet.accelerate.verify import predict_split
    from wastenet.data.manifest import load_split
    from wastenet.evaluate.predict import predict_items

    results, meta, _, _ = exported
    xml = results["openvino"].path
    manifest = _tiny_manifest(tmp_path, set_labels=True)
    val = ValidationSet(manifest, meta)
    top1, hits = val.top1(_compile(ov.Core().read_model(str(xml))), val.items)
    engine = load_engine(xml)
    items = load_split(manifest, "val")
    scored = predict_items(engine, items).score()
    assert any(len(it.labels) == 2 for it in items)
    assert hits == scored.hits.astype(float).tolist() and top1 == scored.accuracy
    assert predict_split(engine, items, {})[1] == 100.0 * scored.accuracy


def test_openvino_int8_accuracy_control_meets_max_drop(tmp_path, exported):
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from wastenet.accelerate.export import CalibSource, export_model

    _, meta, _, _ = exported
    manifest = _tiny_manifest(tmp_path)
    results = export_model(
        tiny_model(), meta, ["openvino-int8"], tmp_path / "out",
        options={"calib_count": 12, "max_drop": 0.0}, calib=CalibSource(manifest=manifest),
    )  # fmt: skip
    rec = results[0].record
    assert rec["quantiser"] == "nncf accuracy control" and rec["val_images"] == 15
    assert rec["val_top1_int8"] >= rec["val_top1_fp32"]  # a 0-point drop was asked for
    assert load_engine(results[0].path).meta == meta


def test_accuracy_control_needs_a_manifest(tmp_path, exported):
    pytest.importorskip("nncf")
    from wastenet.accelerate.export import CalibSource, export_model

    _, meta, _, _ = exported
    images = make_image_folder(tmp_path / "imgs", per_class=2)
    with pytest.raises(ConfigError, match="val split"):
        export_model(
            tiny_model(), meta, ["openvino-int8"], tmp_path / "out",
            options={"max_drop": 0.5}, calib=CalibSource(folder=images),
        )  # fmt: skip


def test_bench_labels_tell_two_artifacts_of_one_format_apart():
    from wastenet.accelerate.bench import row_labels

    rows = [
        {"format": "onnx", "artifact": "/r/export/m.onnx"},
        {"format": "openvino-int8", "artifact": "/r/plain/m.int8.xml"},
        {"format": "openvino-int8", "artifact": "/r/controlled/m.int8.xml"},
    ]
    labels = row_labels(rows)
    assert labels[0] == "onnx" and len(set(labels)) == 3
    assert "plain/m.int8.xml" in labels[1] and "controlled/m.int8.xml" in labels[2]


def test_int8_calibration_and_its_accuracy_control_keep_to_the_training_sources(tmp_path):
    """A source the model never trained on (a held-out test source) gives INT8 neither its
    calibration images nor the val images its accuracy control measures."""
    import dataclasses

    from wastenet.accelerate.openvino_export import ValidationSet
    from wastenet.data.manifest import Manifest, load_manifest

    manifest = _tiny_manifest(tmp_path)
    items = load_manifest(manifest).all_items
    held_out = [dataclasses.replace(it, source="held-out") for it in items]
    both_path = Manifest(all_items=[*items, *held_out]).save(tmp_path / "both.json")
    meta = BundleMeta("tiny", list(CLASSES), [H, W], [0.5] * 3, [0.25] * 3)
    everything = CalibrationSet.from_source(meta, both_path, count=1000)
    assert len(everything) == 2 * len(images_from_manifest(manifest))  # no training record
    trained = dataclasses.replace(meta, train_config={"sources": ["tiny"]})
    calib = CalibrationSet.from_source(trained, both_path, count=1000)
    assert len(calib) == len(images_from_manifest(manifest))
    assert len(ValidationSet(both_path, trained)) == len(ValidationSet(manifest, meta))
    never = dataclasses.replace(meta, train_config={"sources": ["elsewhere"]})
    with pytest.raises(ConfigError, match="no train images of elsewhere to calibrate on"):
        CalibrationSet.from_source(never, both_path)
