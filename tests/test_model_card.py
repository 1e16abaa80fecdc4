"""The model card (the artifact's metadata) sets what its readers default to."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import CLASS_COLOURS
from wastenet.runtime.app import BinOptions, run_bin

pytest.importorskip("onnx")


@pytest.fixture
def strict_model(tmp_path):
    """The flat colour model, whose card says "not sure" below 0.5 (the default is 0.7): at
    sharpness 0.2 the right class wins with about 0.6."""
    from wastenet.runtime.testing import write_colour_model

    path = tmp_path / "strict.onnx"
    examples = {c: [np.full((48, 64, 3), rgb, np.uint8)] for c, rgb in CLASS_COLOURS.items()}
    write_colour_model(path, examples, sharpness=0.2, not_sure_below=0.5)
    return path


def scene(tmp_path):
    from PIL import Image

    folder = tmp_path / "scene"
    folder.mkdir()
    for name in ("cardboard", "glass"):
        Image.new("RGB", (64, 48), CLASS_COLOURS[name]).save(folder / f"{name}.png")
    return f"{folder}?fps=0&hold=14&gap=4&background=%231e1e1e"


def test_the_bin_takes_its_not_sure_threshold_from_the_card(strict_model, tmp_path):
    source = scene(tmp_path)
    card = BinOptions(
        source=source, model=str(strict_model), headless=True, run_dir=str(tmp_path / "a")
    )
    summary = run_bin(card, lambda line: None)
    assert [a.label for a in summary.actuations] == ["cardboard", "glass"]
    given = BinOptions(
        source=source, model=str(strict_model), threshold=0.65, headless=True,
        run_dir=str(tmp_path / "b"),
    )  # fmt: skip
    summary = run_bin(given, lambda line: None)
    assert list(summary.actuations) == [] and summary.decisions == 0  # every vote "not sure"


def test_evaluate_takes_its_not_sure_threshold_from_the_card(strict_model, tmp_path):
    from conftest import make_image_folder
    from wastenet.cli import main

    data = make_image_folder(tmp_path / "data", per_class=4)
    assert main(["data", "split", str(data), "--out", str(tmp_path / "m")]) == 0
    manifest = str(tmp_path / "m" / "manifest.json")
    out = tmp_path / "eval"
    args = ["evaluate", str(strict_model), "--manifest", manifest, "--split", "train",
            "--no-robustness", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["threshold"] == 0.5
    assert main([*args, "--threshold", "0.65"]) == 0
    assert json.loads((out / "report.json").read_text())["threshold"] == 0.65


def test_the_bin_captures_at_the_cards_input_size(strict_model, tmp_path):
    """A folder source without ?size= replays at the model's input (48x64 here, not the
    default 288x384); the stored samples are those frames."""
    import sqlite3

    from PIL import Image

    source = scene(tmp_path)
    store = tmp_path / "store"
    opts = BinOptions(source=source, model=str(strict_model), headless=True, store=str(store),
                      store_policy="all", run_dir=str(tmp_path / "run"))  # fmt: skip
    run_bin(opts, lambda line: None)
    with sqlite3.connect(store / "samples.sqlite") as db:
        paths = [row[0] for row in db.execute("SELECT image_path FROM samples")]
    assert paths
    sizes = {Image.open(store / "images" / p).size for p in paths}
    assert sizes == {(64, 48)}  # PIL: (width, height)
