"""A running bin takes the model an update swapped in, between items, and refuses a bad one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from conftest import CLASS_COLOURS, item_image
from wastenet.accelerate import load_engine
from wastenet.runtime.app import BinOptions, run_bin
from wastenet.runtime.model_watch import ModelWatch

pytest.importorskip("onnx")

SCENE = ["cardboard", "glass", "cardboard", "glass", "cardboard", "glass"]


def _version(root: Path, name: str, colours: dict) -> Path:
    """A model folder holding a real ONNX nearest-colour model fitted on ``colours``."""
    from wastenet.runtime.testing import write_colour_model

    folder = root / "versions" / name
    folder.mkdir(parents=True)
    examples = {c: [item_image(rgb, seed=s) for s in range(4)] for c, rgb in colours.items()}
    write_colour_model(folder / "model.onnx", examples, input_hw=(48, 64))
    return folder


def _point(link: Path, folder: Path) -> None:
    """Swap ``link`` to ``folder`` atomically, as ``wastenet update pull`` does."""
    tmp = link.with_name(".current.tmp")
    tmp.symlink_to(folder.resolve(), target_is_directory=True)
    os.replace(tmp, link)


@pytest.fixture
def bin_folder(tmp_path) -> tuple[Path, Path, Path]:
    """A bin folder whose ``current`` names v1 (right), with v2 (cardboard and glass
    swapped: every decision it makes on them differs) beside it."""
    root = tmp_path / "bin"
    v1 = _version(root, "v1", CLASS_COLOURS)
    swapped = dict(
        CLASS_COLOURS, cardboard=CLASS_COLOURS["glass"], glass=CLASS_COLOURS["cardboard"]
    )
    v2 = _version(root, "v2", swapped)
    _point(root / "current", v1)
    return root / "current", v1, v2


def load_engine_of(folder: Path):
    return load_engine(folder / "model.onnx")


def test_a_swapped_folder_is_loaded_once_and_a_bad_one_refused(bin_folder, tmp_path):
    current, v1, v2 = bin_folder
    now = [0.0]
    lines: list[str] = []
    watch = ModelWatch(current, load_engine_of, load_engine(v1 / "model.onnx").meta.labels,
                       every_s=2.0, clock=lambda: now[0], print_fn=lines.append)  # fmt: skip
    assert watch() is None  # nothing changed
    _point(current, v2)
    assert watch() is None  # not looked at before every_s
    now[0] = 2.0
    engine = watch()
    assert engine is not None and engine.path == v2 / "model.onnx"
    now[0] = 4.0
    assert watch() is None  # taken once
    assert lines == ["model update: v1 -> v2 (model.onnx)"]

    broken = current.parent / "versions" / "v3"
    broken.mkdir()
    (broken / "model.onnx").write_bytes(b"not a model")
    _point(current, broken)
    now[0] = 6.0
    assert watch() is None  # refused: the bin goes on
    assert watch.swaps[-1]["taken"] is False and "v3" in watch.swaps[-1]["to"]
    assert lines[-1].startswith("model update: v3 refused (") and lines[-1].endswith("with v2")
    now[0] = 8.0
    assert watch() is None and len(watch.swaps) == 2  # not retried while the link stays

    other = current.parent / "versions" / "v4"  # a model of other classes
    other.mkdir()
    from wastenet.runtime.testing import write_colour_model

    write_colour_model(other / "model.onnx", {"can": [item_image((1, 2, 3), 0)],
                       "bottle": [item_image((200, 2, 3), 0)]}, input_hw=(48, 64))  # fmt: skip
    _point(current, other)
    now[0] = 10.0
    assert watch() is None
    assert "not cardboard, glass, metal, paper, plastic as the door map" in watch.swaps[-1]["error"]


def test_the_running_bin_sorts_with_the_model_swapped_in(bin_folder, tmp_path):
    current, v1, v2 = bin_folder
    scene = tmp_path / "scene"
    scene.mkdir()
    for i, name in enumerate(SCENE):
        Image.fromarray(item_image(CLASS_COLOURS[name], seed=50 + i)).save(
            scene / f"{i:02d}_{name}.png"
        )
    run_dir = tmp_path / "run"
    opts = BinOptions(
        source=f"{scene}?fps=40&hold=16&gap=8&background=%231e1e1e&size=48x64",
        model=str(current),
        vote=4,
        headless=True,
        run_dir=str(run_dir),
        model_watch_s=0.0,  # look between every two items
    )
    lines: list[str] = []

    def update_after_the_second_decision(line: str) -> None:
        lines.append(line)
        if sum("-> door" in x for x in lines) == 2 and "(v2)" not in "".join(lines):
            _point(current, v2)  # what `wastenet update pull` does while the bin runs
            lines.append("(v2)")

    summary = run_bin(opts, update_after_the_second_decision)
    labels = [a.label for a in summary.actuations]
    assert labels == ["cardboard", "glass", "glass", "cardboard", "glass", "cardboard"]
    assert "model update: v1 -> v2 (model.onnx)" in lines
    record = json.loads((run_dir / "run.json").read_text())
    (swap,) = record["model_swaps"]
    assert swap["taken"] and swap["to"] == str(v2.resolve())
