"""Before against after, fold by fold: differences, means and the issue's targets."""

import json

import pytest

from conftest import load_benchmark
from wastenet.evaluate import shift_compare

compare_shift = load_benchmark("compare_shift")


def _result(scores: dict[str, tuple[float, int, float | None]], manifest="m1") -> dict:
    """A shift result whose folds score ``{source: (top-1, n, OOD not sure at 5 %)}``."""
    folds = []
    for source, (top1, n, ood) in scores.items():
        ood_block = {"n": 0, "not_sure_rate": None}
        if ood is not None:
            ood_block = {"n": 50, "not_sure_rate": 0.5, "not_sure_at_refusals": ood}
        scored = {
            source: {"role": "left_out", "n": n, "top1_set": top1, "top1_set_ci95": [0, 1],
                     "ood": ood_block},
            "held": {"role": "holdout", "n": 9, "top1_set": 0.1, "ood": {"n": 0}},
        }  # fmt: skip
        folds.append({"name": f"without-{source}", "scored": scored})
    return {"manifest_hash": manifest, "folds": folds, "recipes": ["r"], "resolution_pct": None}


def test_differences_means_and_targets():
    before = _result({"a": (0.50, 400, 0.40), "b": (0.60, 100, None), "c": (0.70, 900, 0.5)})
    after = _result({"a": (0.90, 400, 0.70), "b": (0.80, 100, None), "c": (0.86, 900, 0.6)})
    cmp = shift_compare.compare(before, after)
    assert [r["source"] for r in cmp["rows"]] == ["a", "b", "c"]  # the holdout is not a fold
    a = cmp["rows"][0]
    assert a["difference"] == pytest.approx(0.40)
    se = (0.5 * 0.5 / 400 + 0.9 * 0.1 / 400) ** 0.5
    assert a["difference_ci95"] == pytest.approx([0.40 - 1.959964 * se, 0.40 + 1.959964 * se])
    m = cmp["mean"]
    assert m["before"] == pytest.approx(0.60) and m["after"] == pytest.approx(0.8533333)
    assert m["difference"] == pytest.approx(0.2533333)
    assert m["ood_not_sure_after"] == pytest.approx(0.65)  # over the folds with outliers
    assert m["ood_not_sure_before"] == pytest.approx(0.45)
    t = cmp["targets"]
    assert t["mean_gain"]["met"] and t["ood_not_sure"]["met"]
    assert not t["floor"]["met"] and t["floor"]["source"] == "b"  # 80 % < 85 %
    md = shift_compare.markdown(cmp)
    assert "| a | 400 | 50.0 % (0.0-100.0) | 90.0 % (0.0-100.0) | +40.0 (" in md
    assert "40.0 % -> 70.0 % (50)" in md and "| b | 100 |" in md and "– (0)" in md
    assert md.splitlines()[5].endswith("| 45.0 % -> 65.0 % |")  # the mean row
    assert "lowest b 80.0 % (not met)" in md


def test_results_of_other_items_are_refused(tmp_path, capsys):
    one = _result({"a": (0.5, 400, None), "b": (0.6, 100, None)})
    cases = {
        "different manifests": _result({"a": (0.5, 400, None), "b": (0.6, 100, None)}, "m2"),
        "left-out sources differ": _result({"a": (0.5, 400, None)}),
        "a: 400 items against 399": _result({"a": (0.5, 399, None), "b": (0.6, 100, None)}),
    }
    (tmp_path / "one.json").write_text(json.dumps(one))
    for message, other in cases.items():
        (tmp_path / "other.json").write_text(json.dumps(other))
        args = ["--before", str(tmp_path / "one.json"), "--after", str(tmp_path / "other.json")]
        assert compare_shift.main([*args, "--name", "x", "--out", str(tmp_path / "res")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "res").exists()
    # one side from two results made a fold at a time
    for name, source in (("fold_a", "a"), ("fold_b", "b")):
        part = dict(one, folds=[f for f in one["folds"] if f["name"] == f"without-{source}"])
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
    args = ["--before", str(tmp_path / "fold_a.json"), str(tmp_path / "fold_b.json")]
    args += ["--after", str(tmp_path / "one.json"), "--name", "same"]
    assert compare_shift.main([*args, "--out", str(tmp_path / "res")]) == 0
    written = json.loads((tmp_path / "res" / "compare_shift_same.json").read_text())
    assert [r["source"] for r in written["rows"]] == ["a", "b"]
    assert written["mean"]["difference"] == 0 and written["before"]["recipes"] == ["r"]
    assert len(written["before"]["results"]) == 2 and not written["targets"]["mean_gain"]["met"]
    args[2] = str(tmp_path / "fold_a.json")  # the same fold twice on one side
    assert compare_shift.main([*args, "--out", str(tmp_path / "res")]) == 2
    assert "without-a appears in two results" in capsys.readouterr().err


def test_targets_wait_for_the_folds_not_measured_yet():
    def one_fold(top1: float) -> dict:
        result = _result({"a": (top1, 400, 0.7)})
        result["folds"][0].update(left_out=["a"], train_sources=["b", "c"])
        return result

    cmp = shift_compare.compare(one_fold(0.5), one_fold(0.9))
    assert cmp["not_measured"] == ["b", "c"]
    t = cmp["targets"]
    # a +40-point gain and 70 % outliers on one fold decide nothing for the mean of three
    assert t["mean_gain"]["met"] is None and t["ood_not_sure"]["met"] is None
    assert t["floor"]["met"] is None  # 90 % so far; b or c may still fall under 85 %
    md = shift_compare.markdown(cmp)
    assert "Folds measured: 1 of 3; not yet: b, c." in md
    assert "+40.0 (undecided until every fold is measured)" in md
    # the mean of three reaches +15 when b and c gain (45 - 40) / 2 points each
    assert t["mean_gain"]["needed_from_each_missing_fold"] == pytest.approx(0.025)
    assert "each fold not measured would need to gain +2.5 points" in md
    # a gain no top-1 can make decides the target: after -40 on a, b and c need +42.5 each
    down = shift_compare.compare(one_fold(0.9), one_fold(0.5))["targets"]["mean_gain"]
    assert down["met"] is None and down["needed_from_each_missing_fold"] == pytest.approx(0.425)
    two = {s: (0.9, 400, 0.7) for s in ("a", "b")}
    before, after = _result(two), _result({"a": (0.1, 400, 0.7), "b": (0.2, 400, 0.7)})
    for result in (before, after):
        for fold in result["folds"]:
            fold.update(left_out=[fold["name"][8:]], train_sources=["c"])
    lost = shift_compare.compare(before, after)["targets"]["mean_gain"]  # c would need +195
    assert lost["met"] is False and lost["needed_from_each_missing_fold"] == pytest.approx(1.95)
    # a measured fold already under the floor decides it
    assert shift_compare.compare(one_fold(0.5), one_fold(0.8))["targets"]["floor"]["met"] is False
    # every fold measured: decided, and nothing listed
    full = shift_compare.compare(_result({"a": (0.5, 400, 0.7)}), _result({"a": (0.9, 400, 0.7)}))
    assert full["not_measured"] == [] and full["targets"]["mean_gain"]["met"] is True
