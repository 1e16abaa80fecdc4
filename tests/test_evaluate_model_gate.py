"""The model gate: paired rows, verdicts beyond noise, and the CLI's pass, fail and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASS_COLOURS, make_image, make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.data.manifest import load_manifest
from wastenet.evaluate.model_gate import ANSWERED_ROW, OOD_ROW, mcnemar_exact, paired, verdict


def test_exact_mcnemar_matches_hand_computed_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    assert mcnemar_exact(3, 6) == pytest.approx(2 * (1 + 9 + 36 + 84) / 512)
    assert mcnemar_exact(5, 5) == 1.0


def hits(right: int, n: int) -> np.ndarray:
    return np.arange(n) < right


def test_a_row_is_worse_only_beyond_the_tolerance_and_beyond_noise():
    old = hits(90, 100)
    row = paired(old, hits(80, 100))  # 10 items only the old model got right: p = 0.002
    assert row["difference_points"] == pytest.approx(-10.0)
    assert (row["old_only"], row["new_only"]) == (10, 0)
    assert (
        row["old"]["accuracy"] == pytest.approx(90.0)
        and row["old"]["ci95"][0] < 90 < row["old"]["ci95"][1]
    )
    assert verdict(row) == "worse"
    assert verdict(paired(old, hits(87, 100))) == "worse, within noise"  # 3 items: p = 0.25
    assert verdict(paired(old, hits(87, 100)), tolerance=5) == "level"
    assert verdict(paired(old, hits(89, 100))) == "level"  # -1 point: within the tolerance
    assert verdict(paired(hits(80, 100), old)) == "better"
    assert verdict(paired(old, old)) == "level"


def colour_model(path: Path, colours: dict) -> Path:
    """A real ONNX nearest-colour model whose class centroids come from ``colours``."""
    from wastenet.runtime.testing import write_colour_model

    examples = {
        c: [np.asarray(make_image(rgb, seed=s)) for s in range(4)] for c, rgb in colours.items()
    }
    write_colour_model(path, examples, input_hw=(48, 64))
    return path


@pytest.fixture(scope="module")
def gate_setup(tmp_path_factory):
    pytest.importorskip("onnx")
    from wastenet.data.split import build_split

    tmp = tmp_path_factory.mktemp("gate")
    roots = [
        make_image_folder(tmp / "alpha", per_class=30, seed=0),
        make_image_folder(tmp / "beta", per_class=30, seed=700, classes=(*CLASSES, "trash")),
    ]
    manifest = tmp / "manifest.json"
    build_split(roots, progress=False, workers=1).manifest.save(manifest)
    good = colour_model(tmp / "good.onnx", CLASS_COLOURS)
    # glass's centroid moved onto cardboard's colour: glass items go to another class
    broken = colour_model(
        tmp / "broken.onnx", {**CLASS_COLOURS, "glass": CLASS_COLOURS["cardboard"]}
    )
    return manifest, good, broken


def gate_cli(*args) -> int:
    return main(["gate", *map(str, args)])


def test_the_gate_passes_a_model_against_itself_and_fails_a_broken_one(
    gate_setup, tmp_path, capsys
):
    manifest, good, broken = gate_setup
    out = tmp_path / "gate.json"
    assert gate_cli(good, good, "--manifest", manifest, "--out", out) == 0
    assert "gate PASSED" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["passed"] and result["failed_on"] == []
    assert set(result["rows"]) == {"alpha", "beta", ANSWERED_ROW, OOD_ROW}
    outliers = load_manifest(manifest).ood_items(training=False)  # trash outside train's groups
    assert result["rows"][OOD_ROW]["n"] == len(outliers) > 0
    assert all(
        r["verdict"] == "level" and r["old_only"] == r["new_only"] == 0
        for r in result["rows"].values()
    )
    assert result["old"]["sha256"] == result["new"]["sha256"] and result["manifest"]["hash"]
    assert result["pooled"]["n"] == sum(result["rows"][s]["n"] for s in ("alpha", "beta")) > 60
    assert "provenance" in result

    assert gate_cli(good, broken, "--manifest", manifest, "--out", out) == 5
    text = capsys.readouterr().out
    assert "gate FAILED on alpha, beta" in text and "| worse |" in text
    result = json.loads(out.read_text())
    assert not result["passed"] and result["failed_on"][:2] == ["alpha", "beta"]
    for source in ("alpha", "beta"):
        row = result["rows"][source]
        assert row["difference_points"] < -10 and row["mcnemar_p"] < 0.05 and row["new_only"] == 0
    # two equal centroids split glass and cardboard items 50/50: the broken model refuses them
    assert result["rows"][ANSWERED_ROW]["verdict"] == "worse"

    # the other way round the new model sorts better, but it sorts the grey outliers that
    # the broken one refused into doors: the gate fails on that row alone
    assert gate_cli(broken, good, "--manifest", manifest, "--out", out) == 5
    result = json.loads(out.read_text())
    assert result["failed_on"] == [OOD_ROW]
    assert {result["rows"][k]["verdict"] for k in ("alpha", "beta", ANSWERED_ROW)} == {"better"}


def test_bad_gate_input_is_one_line(gate_setup, tmp_path, capsys):
    manifest, good, _ = gate_setup
    assert gate_cli(good, tmp_path / "missing.onnx", "--manifest", manifest) == 2
    assert "missing.onnx: no such model file" in capsys.readouterr().err
    assert gate_cli(good, good, "--manifest", manifest, "--tolerance", "-1") == 2
    assert "--tolerance -1" in capsys.readouterr().err
    assert gate_cli(good, good, "--manifest", manifest, "--alpha", "2") == 2
    assert "--alpha 2" in capsys.readouterr().err
