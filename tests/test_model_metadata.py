"""Model files checked against their own metadata at load time (issue "Hardening", 4).

Every malformed model here is a real ONNX file written with the ``onnx`` package:
the colour-centroid classifier of ``wastenet.runtime.testing`` with its graph or its
metadata tampered, loaded through ``load_engine`` exactly as the bin loads it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wastenet.accelerate import load_engine
from wastenet.classes import CLASSES
from wastenet.errors import ModelFileError
from wastenet.meta import META_KEY, BundleMeta

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

COLOURS = [(150, 100, 50), (40, 200, 90), (160, 160, 170), (250, 250, 240), (30, 60, 220),
           (200, 40, 40), (240, 220, 30)]  # fmt: skip
HW = (48, 64)


def write_model(path: Path, n_classes: int = 5, input_hw=HW) -> Path:
    """A real, well-formed ONNX classifier of ``n_classes`` solid colours."""
    from wastenet.runtime.testing import write_colour_model

    labels = [*CLASSES, "trash", "organic"][:n_classes]
    examples = {
        label: [np.full((24, 32, 3), COLOURS[i], np.uint8)] for i, label in enumerate(labels)
    }
    write_colour_model(path, examples, input_hw=input_hw)
    return path


def tamper(path: Path, *, meta: dict | None = None, input_dims=None) -> Path:
    """Rewrite ``path`` in place: metadata keys replaced raw (any JSON value, valid or
    not), or the graph input's H and W dimensions (ints static, strings dynamic)."""
    proto = onnx.load(str(path))
    if meta is not None:
        prop = next(p for p in proto.metadata_props if p.key == META_KEY)
        prop.value = json.dumps({**json.loads(prop.value), **meta})
    if input_dims is not None:
        dims = proto.graph.input[0].type.tensor_type.shape.dim
        for dim, value in zip(dims[2:], input_dims, strict=True):
            if isinstance(value, str):
                dim.dim_param = value
            else:
                dim.dim_value = value
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("meta_models")


def test_a_good_model_still_loads_and_predicts(models):
    path = write_model(models / "good.onnx")
    with load_engine(path) as engine:
        assert engine.meta.labels == list(CLASSES) and engine.meta.input_size == list(HW)
        probs = engine.predict(np.zeros((2, 3, *HW), np.float32))
    assert probs.shape == (2, 5)


def test_dynamic_height_and_width_pass(models):
    path = tamper(write_model(models / "dynamic.onnx"), input_dims=("H", "W"))
    with load_engine(path) as engine:
        assert engine.predict(np.zeros((1, 3, *HW), np.float32)).shape == (1, 5)


@pytest.mark.parametrize("n_outputs", [7, 3])
def test_output_width_must_equal_the_number_of_labels(models, n_outputs):
    path = write_model(models / f"out{n_outputs}.onnx", n_classes=n_outputs)
    tamper(path, meta={"labels": list(CLASSES)})
    with pytest.raises(ModelFileError) as err:
        load_engine(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert f"N x {n_outputs}" in message and "5 labels" in message


def test_static_input_must_match_the_metadata_size(models):
    path = write_model(models / "small_input.onnx", input_hw=(224, 224))
    tamper(path, meta={"input_size": [288, 384]})
    with pytest.raises(ModelFileError) as err:
        load_engine(path)
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    assert "224 x 224" in message and "288 x 384" in message


def test_check_graph_rules():
    """Ranks, channels and dynamic dimensions, as every backend reports its shapes."""
    from wastenet.accelerate.engine import check_graph

    meta = BundleMeta("tiny", list(CLASSES), list(HW), [0.5] * 3, [0.25] * 3)
    check_graph(Path("m"), meta, [1, 3, *HW], [1, 5])  # all static, all agree
    check_graph(Path("m"), meta, ["batch", 3, None, -1], [None, "classes"])  # dynamic
    check_graph(Path("m"), meta, None, None)  # rank unknown: nothing to check here
    with pytest.raises(ModelFileError, match=r"m: the graph's input is N x 4 x 48 x 64"):
        check_graph(Path("m"), meta, [None, 4, *HW], [None, 5])
    with pytest.raises(ModelFileError, match=r"input is 3 x 48 x 64, its metadata says N x 3"):
        check_graph(Path("m"), meta, [3, *HW], [None, 5])
    with pytest.raises(ModelFileError, match=r"output is N x 5 x 1 x 1 \(rank 4"):
        check_graph(Path("m"), meta, [None, 3, *HW], [None, 5, 1, 1])
    with pytest.raises(ModelFileError, match="the graph has 2 inputs"):
        check_graph(Path("m"), meta, [None, 3, *HW], [None, 5], inputs=2)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("format_version", "abc", "format_version must be a positive integer, got 'abc'"),
        ("input_size", 288, "input_size must be [height, width]"),
        ("temperature", "hot", "temperature must be a positive finite number, got 'hot'"),
        ("temperature", 0, "temperature must be a positive finite number"),
        ("input_size", [0, 0], "got [0, 0]"),
        ("input_size", [60000, 60000], "got [60000, 60000]"),
        ("input_size", [48.5, 64], "input_size must be"),
        ("labels", [], "labels must be a non-empty list"),
        ("labels", ["glass", "glass", "metal", "paper", "plastic"], "'glass' repeats"),
        ("labels", "glass", "labels must be a non-empty list"),
        ("mean", [0.5, 0.5], "mean must be 3 finite numbers"),
        ("std", [0.2, 0.0, 0.2], "std must be 3 finite numbers above 0"),
        ("std", [0.2, "x", 0.2], "std must be 3 finite numbers above 0"),
        ("architecture", 7, "architecture must be a non-empty string"),
    ],
)
def test_malformed_metadata_is_refused_at_load(models, key, value, expected):
    path = tamper(write_model(models / f"bad_{key}.onnx"), meta={key: value})
    with pytest.raises(ModelFileError) as err:
        load_engine(path)
    message = str(err.value)
    assert message.startswith(f"{path}: metadata {key}") and "\n" not in message
    assert expected in message


def test_metadata_checks_live_where_it_is_parsed():
    good = BundleMeta("tiny", list(CLASSES), list(HW), [0.5] * 3, [0.25] * 3, temperature=1.5)
    assert BundleMeta.from_json(good.to_json()) == good
    data = json.loads(good.to_json())
    assert BundleMeta.from_dict(data) == good
    with pytest.raises(ModelFileError, match="m.onnx: metadata temperature"):
        BundleMeta.from_dict({**data, "temperature": float("nan")}, origin="m.onnx")
    with pytest.raises(ModelFileError, match="newer WasteNet"):
        BundleMeta.from_dict({**data, "format_version": 99})
    with pytest.raises(ModelFileError, match="not an object"):
        BundleMeta.from_json("[1, 2]")


@pytest.mark.parametrize(
    ("n_classes", "graph_hw", "expected"),
    [
        (7, HW, r"output is N x 7 \(7 classes\), its metadata lists 5 labels"),
        (5, (224, 224), r"input is N x 3 x 224 x 224, its metadata says N x 3 x 48 x 64"),
    ],
)
def test_openvino_checks_the_same_shapes(models, n_classes, graph_hw, expected):
    """Before any compile: OpenVINO would otherwise reshape a 224 x 224 input and run."""
    pytest.importorskip("openvino")
    from wastenet.accelerate.openvino_export import convert_onnx, save_ir

    path = write_model(models / f"ov_{n_classes}.onnx", n_classes=n_classes, input_hw=graph_hw)
    meta = BundleMeta("colour", list(CLASSES), list(HW), [0.5] * 3, [0.25] * 3, created="t")
    xml = save_ir(convert_onnx(path), meta, models / f"ov_{n_classes}.xml")
    with pytest.raises(ModelFileError, match=rf"ov_{n_classes}\.xml: the graph's {expected}"):
        load_engine(xml)


def test_bin_cli_prints_one_line_and_exits_2(models, capsys):
    from wastenet.cli import main

    path = write_model(models / "cli7.onnx", n_classes=7)
    tamper(path, meta={"labels": list(CLASSES)})
    code = main(["run", "--model", str(path), "--headless", "--max-frames", "5"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("wastenet: error: ") and err.count("\n") == 1
    assert "Traceback" not in err and str(path) in err and "5 labels" in err
