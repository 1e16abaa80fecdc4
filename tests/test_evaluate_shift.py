"""Leave-one-source-out (``wastenet shift``): real splits, real tiny training, no mocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder
from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.train.config import load_train_config

pytest.importorskip("torch")

SOURCES = ("alpha", "beta", "gamma")


def _recipe(path: Path, cache: Path, phases: str) -> Path:
    """A tiny-model recipe YAML: 1 epoch per phase, 2 steps an epoch."""
    path.write_text(
        f"model: tiny_efficientnet\npretrained: false\nresolution_pct: 25\nbatch_size: 8\n"
        f"max_steps_per_epoch: 2\ncache_dir: {cache}\naugment: {{preset: none}}\n"
        f"phases:\n{phases}"
    )
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    """alpha (with trash = OOD), beta, gamma (a paper|cardboard set label) and delta."""
    from wastenet.data.split import build_split

    tmp = tmp_path_factory.mktemp("shift")
    make_image_folder(tmp / "alpha", per_class=4, seed=0, classes=(*CLASSES, "trash"))
    make_image_folder(tmp / "beta", per_class=4, seed=500)
    gamma = ("glass", "metal", "plastic", "paper_and_cardboard")
    make_image_folder(tmp / "gamma", per_class=4, seed=900, classes=gamma)
    make_image_folder(tmp / "delta", per_class=3, seed=1300)
    roots = [tmp / s for s in (*SOURCES, "delta")]
    split = build_split(roots, folds=0, ratios=(0.5, 0.25, 0.25), workers=1, progress=False)
    cache = tmp / "cache"
    stage1 = "  - {name: main, epochs: 1, lr: 3.0e-3}\n"
    stage1 += "  - {name: alpha_only, epochs: 1, lr: 1.0e-3, sources: [alpha]}\n"
    return {
        "tmp": tmp,
        "manifest": split.manifest.save(tmp / "manifest.json"),
        "r1": _recipe(tmp / "r1.yaml", cache, stage1),
        "r2": _recipe(tmp / "r2.yaml", cache, "  - {name: main, epochs: 1, lr: 1.0e-3}\n"),
    }


def _shift(data: dict, out: Path, *extra: str, recipes=("r1", "r2")) -> int:
    args = ["shift", *(str(data[r]) for r in recipes), "--manifest", str(data["manifest"])]
    return main([*args, "--out", str(out), "--no-progress", *extra])


@pytest.fixture(scope="module")
def loso(data) -> dict:
    """A chained two-stage recipe, delta held out, screened at 12.5 % (48x64)."""
    out = data["tmp"] / "out"
    assert _shift(data, out, "--holdout-only", "delta", "--resolution", "12.5") == 0
    return {"out": out, "result": json.loads((out / "shift.json").read_text())}


def _manifest(data):
    from wastenet.data.manifest import load_manifest

    return load_manifest(data["manifest"])


def test_one_fold_per_source_trained_without_it(loso):
    folds = loso["result"]["folds"]
    assert [f["name"] for f in folds] == [f"without-{s}" for s in SOURCES]
    for fold in folds:
        (left,) = fold["left_out"]
        assert fold["train_sources"] == [s for s in SOURCES if s != left]
        assert fold["status"] == "trained" and fold["train_seconds"] > 0
        for stage in fold["stages"]:  # what training really drew from
            cfg = load_train_config(str(Path(stage["dir"]) / "config.yaml"))
            assert cfg.sources == fold["train_sources"]
            assert cfg.resolution_pct == 12.5
            assert all(p.resolution_pct == 12.5 for p in cfg.phases)
        header = (Path(fold["stages"][0]["dir"]) / "metrics.csv").read_text().splitlines()[0]
        assert f"val_acc_{left}" not in header and "val_acc_delta" not in header


def test_chained_stage_starts_from_the_previous_stage_of_the_same_fold(loso):
    for fold in loso["result"]["folds"]:
        first, second = fold["stages"]
        assert first["pretrained"] is False
        assert second["pretrained"] == str(Path(first["dir"]) / "model.safetensors")
        assert fold["model"] == str(Path(second["dir"]) / "model.safetensors")


def test_left_out_source_scored_on_all_its_items(loso, data):
    manifest = _manifest(data)
    for fold in loso["result"]["folds"]:
        (left,) = fold["left_out"]
        items = manifest.items(source=left)
        assert {it.split for it in items} == {"train", "val", "test"}
        scored = fold["scored"][left]
        assert scored["role"] == "left_out" and scored["n"] == len(items)
        assert scored["top1_set_ci95"] is not None and scored["not_sure"]["n"] == len(items)
        assert scored["ood"]["n"] == len(manifest.items(split="ood", source=left))
        seen = [it for it in manifest.items(split="test") if it.source in fold["train_sources"]]
        assert fold["seen_test"]["n"] == len(seen)
        assert fold["temperature"] > 0
    alpha = loso["result"]["folds"][0]["scored"]["alpha"]
    assert alpha["ood"]["n"] == 4 and alpha["ood"]["not_sure_rate"] is not None


def test_set_labels_count_when_the_prediction_is_in_the_set(loso):
    gamma = loso["result"]["folds"][2]["scored"]["gamma"]
    conf = gamma["confusion"]
    assert "cardboard|paper" in conf["rows"] and gamma["n_set_label"] == 4
    right = 0
    for row, counts in zip(conf["rows"], conf["counts"], strict=True):
        right += sum(
            n for col, n in zip(conf["columns"], counts, strict=True) if col in row.split("|")
        )
    assert gamma["top1_set_right"] == right
    assert gamma["top1_set"] == pytest.approx(right / gamma["n"])
    assert set(gamma["recall"]) == {"glass", "metal", "plastic"}  # its exact classes only


def test_holdout_only_never_trained_and_scored_by_every_fold(loso, data):
    n_delta = len(_manifest(data).items(source="delta"))
    for fold in loso["result"]["folds"]:
        assert "delta" not in fold["train_sources"]
        assert fold["scored"]["delta"]["role"] == "holdout"
        assert fold["scored"]["delta"]["n"] == n_delta
    summary = loso["result"]["summary"]
    assert summary["holdout"]["delta"]["n_scores"] == 3
    assert summary["left_out"]["n_scores"] == 3  # delta is not in the left-out mean
    md = (loso["out"] / "shift.md").read_text()
    assert "Holdout-only sources" in md and "Mean top-1 on holdout delta" in md


def test_phase_on_the_left_out_source_is_dropped_and_recorded(loso):
    folds = {f["name"]: f for f in loso["result"]["folds"]}
    dropped = folds["without-alpha"]["dropped_phases"]
    assert dropped == [{"stage": 1, "recipe": dropped[0]["recipe"], "phase": "alpha_only",
                        "sources": ["alpha"]}]  # fmt: skip
    cfg = load_train_config(folds["without-alpha"]["stages"][0]["dir"] + "/config.yaml")
    assert [p.name for p in cfg.phases] == ["main"]
    cfg = load_train_config(folds["without-beta"]["stages"][0]["dir"] + "/config.yaml")
    assert [(p.name, p.sources) for p in cfg.phases] == [("main", None), ("alpha_only", ["alpha"])]
    assert folds["without-beta"]["dropped_phases"] == []
    assert "phase `alpha_only`" in (loso["out"] / "shift.md").read_text()


def test_json_and_markdown_hold_the_table(loso):
    result = loso["result"]
    assert result["mode"] == "loso" and result["resolution_pct"] == 12.5
    assert [Path(r).name for r in result["recipes"]] == ["r1.yaml", "r2.yaml"]
    assert result["holdout_only"] == ["delta"] and result["threshold"] is None
    # no --threshold: each fold's model says "not sure" by its own card's rule
    rules = {f["not_sure_rule"] for f in result["folds"]}
    assert rules == {"top probability below 0.7"}
    md = (loso["out"] / "shift.md").read_text()
    assert "'not sure': top probability below 0.7" in md
    assert "| left out | trained on | n | top-1 (95 % CI) |" in md
    assert "Mean top-1 over 3 left-out source(s)" in md and "Per-class recall" in md
    for source in SOURCES:
        assert f"\n| {source} | " in md
    mean = np.mean([f["scored"][f["left_out"][0]]["top1_set"] for f in result["folds"]])
    assert result["summary"]["left_out"]["mean_top1_set"] == pytest.approx(mean)
    # alpha's outliers at the bar refusing 5 % of the fold's seen test items
    alpha = result["folds"][0]["scored"]["alpha"]["ood"]
    assert 0.0 <= alpha["not_sure_at_refusals"] <= 1.0 and alpha["refusals"] == 0.05
    summary = result["summary"]["left_out"]
    assert summary["mean_not_sure_ood_at_refusals"] == alpha["not_sure_at_refusals"]
    assert "on its OOD at 5 % refusals" in md and "at the bar refusing 5 %" in md


def test_rerun_reuses_finished_folds(loso, data, capsys):
    models = [Path(s["dir"]) / "model.safetensors" for f in loso["result"]["folds"]
              for s in f["stages"]]  # fmt: skip
    before = [m.stat().st_mtime_ns for m in models]
    for extra in ((), ("--skip-train",)):
        assert (
            _shift(data, loso["out"], "--holdout-only", "delta", "--resolution", "12.5", *extra)
            == 0
        )
        assert "| left out | trained on |" in capsys.readouterr().out  # the table, printed
        again = json.loads((loso["out"] / "shift.json").read_text())
        assert [f["status"] for f in again["folds"]] == ["reused"] * 3
        assert [m.stat().st_mtime_ns for m in models] == before
        for old, new in zip(loso["result"]["folds"], again["folds"], strict=True):
            assert new["train_seconds"] == old["train_seconds"]
            assert new["scored"]["delta"]["top1_set"] == old["scored"]["delta"]["top1_set"]
    # the same folder with another recipe is refused, not silently reused
    assert _shift(data, loso["out"], "--holdout-only", "delta", "--resolution", "25") == 2
    assert "another config" in capsys.readouterr().err


def test_existing_bundle_scores_every_unseen_source(loso, data):
    fold = loso["result"]["folds"][0]  # trained on beta and gamma
    out = data["tmp"] / "existing"
    args = ["shift", "--model", fold["model"], "--trained-on", "beta", "gamma"]
    args += ["--manifest", str(data["manifest"]), "--cache-dir", str(data["tmp"] / "cache")]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads((out / "shift.json").read_text())
    (only,) = result["folds"]
    assert result["mode"] == "existing" and only["left_out"] == ["alpha", "delta"]
    assert {s["role"] for s in only["scored"].values()} == {"left_out"}
    for source in ("alpha", "delta"):  # the same model, the same numbers as in its fold
        assert only["scored"][source]["top1_set"] == fold["scored"][source]["top1_set"]
        assert only["scored"][source]["not_sure"] == fold["scored"][source]["not_sure"]


def test_each_fold_distils_from_the_same_fold_of_an_earlier_run(loso, data, capsys):
    """--teachers-from: no fold's teacher saw its left-out source; lists narrow per fold."""
    fixed = loso["result"]["folds"][0]["model"]  # saw beta and gamma: a leak in their folds
    teaching = _recipe(
        data["tmp"] / "teach.yaml",
        data["tmp"] / "cache",
        "  - {name: main, epochs: 1, lr: 1.0e-3}\n",
    )
    text = teaching.read_text() + f"teachers: [{fixed}]\ndistill_sources: [alpha]\n"
    teaching.write_text(text + "ood_weight: 0.5\nood_sources: [beta]\n")
    base = ["shift", str(teaching), "--manifest", str(data["manifest"]), "--holdout-only"]
    base += ["delta", "--resolution", "12.5", "--no-progress"]
    assert main([*base, "--out", str(data["tmp"] / "taught")]) == 0
    assert "--teachers-from gives each fold its own" in capsys.readouterr().err  # the warning
    per_fold = [*base, "--teachers-from", str(loso["out"]), "--out"]
    assert main([*per_fold, str(data["tmp"] / "taught")]) == 2
    assert "another config" in capsys.readouterr().err  # the leaky folds are not reused
    out = data["tmp"] / "taught_per_fold"
    assert main([*per_fold, str(out)]) == 0
    # the earlier run's shift.json kept elsewhere names the same teachers
    kept = [*base, "--teachers-from", str(loso["out"] / "shift.json"), "--skip-train", "--out"]
    assert main([*kept, str(out)]) == 0
    capsys.readouterr()
    result = json.loads((out / "shift.json").read_text())
    earlier = {f["name"]: f["model"] for f in loso["result"]["folds"]}
    for fold in result["folds"]:
        (stage,) = fold["stages"]
        cfg = load_train_config(str(Path(stage["dir"]) / "config.yaml"))
        if fold["name"] == "without-alpha":  # alpha was the only source to distil on
            assert cfg.teachers is None and cfg.distill_sources is None
            assert stage["teachers"] is None
            assert [d["term"] for d in fold["dropped_phases"]] == ["distill_sources"]
        else:
            assert stage["teachers"] == cfg.teachers == [earlier[fold["name"]]]
            assert cfg.distill_sources == ["alpha"]
        if fold["name"] == "without-beta":  # beta was the only source of outliers
            assert cfg.ood_weight == 0.0 and cfg.ood_sources is None
            assert [d["term"] for d in fold["dropped_phases"]] == ["ood_sources"]
        else:
            assert cfg.ood_weight == 0.5
    md = (out / "shift.md").read_text()
    assert f"distilled from `{earlier['without-gamma']}`" in md
    assert "without distillation: it draws only on alpha" in md
    # a run without that fold's model, or without a result at all: one clear line
    partial = data["tmp"] / "partial"
    partial.mkdir()
    cut = dict(loso["result"], folds=loso["result"]["folds"][:2])
    (partial / "shift.json").write_text(json.dumps(cut))
    moved = data["tmp"] / "moved.json"  # relative fold paths, read from another folder
    folds = [dict(f, model=f"elsewhere/{f['name']}/model.safetensors") for f in cut["folds"]]
    moved.write_text(json.dumps(dict(cut, folds=folds)))
    for source, message in ((partial, "fold without-gamma has no finished model"),
                            (data["tmp"], "no shift.json there"),
                            (moved, "model elsewhere/without-alpha/model.safetensors is not "
                                    "there (its paths are relative")):  # fmt: skip
        assert main([*base, "--teachers-from", str(source), "--out", str(partial)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_a_given_model_stands_for_its_fold_untrained(loso, data, capsys):
    """--fold-model S=MODEL: MODEL is scored as the fold without S; the others train."""
    folds = {f["name"]: f for f in loso["result"]["folds"]}
    given = folds["without-alpha"]["model"]
    out = data["tmp"] / "given"
    base = ["shift", str(data["r2"]), "--manifest", str(data["manifest"]), "--holdout-only"]
    base += ["delta", "--resolution", "12.5", "--no-progress", "--out", str(out)]
    assert main([*base, "--fold-model", f"alpha={given}", "--folds", "alpha"]) == 0
    (only,) = json.loads((out / "shift.json").read_text())["folds"]
    assert only["name"] == "without-alpha" and not (out / "without-beta").exists()
    # a given fold is a finished model: --skip-train scores it
    again = [*base, "--fold-model", f"alpha={given}", "--folds", "alpha", "--skip-train"]
    assert main(again) == 0
    (only,) = json.loads((out / "shift.json").read_text())["folds"]
    assert only["status"] == "given" and only["scored"]["alpha"]["n"] > 0
    assert main([*base, "--fold-model", f"alpha={given}"]) == 0
    capsys.readouterr()
    result = json.loads((out / "shift.json").read_text())
    first, *others = result["folds"]
    assert first["status"] == "given" and first["model"] == given and first["stages"] == []
    assert not (out / "without-alpha").exists()
    for source in ("alpha", "delta"):  # the same model, the same numbers as in its own run
        assert first["scored"][source] == folds["without-alpha"]["scored"][source]
    assert [f["status"] for f in others] == ["trained", "trained"]
    assert result["fold_models"] == {"alpha": given}
    cases = {
        f"zeta={given}": "no fold leaves out zeta",
        f"beta={given}": "it trained on beta",  # the without-alpha model saw beta
        "alpha=missing.safetensors": "no such model file",
        "alpha": "takes SOURCE=MODEL",
    }
    for pair, message in cases.items():
        assert main([*base, "--fold-model", pair]) == 2, pair
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1


def test_interrupted_fold_resumes(data, tmp_path, monkeypatch):
    import wastenet.train.loop as loop

    class StopAfterOneStep(loop._StopFlag):
        checks = 0

        @property
        def requested(self):
            type(self).checks += 1
            return type(self).checks == 1

        @requested.setter
        def requested(self, value):
            pass

    monkeypatch.setattr(loop, "_StopFlag", StopAfterOneStep)
    out = tmp_path / "cut"
    assert _shift(data, out, "--sources", "alpha", "beta", recipes=("r2",)) == 130
    stage = out / "without-alpha" / "stage1"
    assert (stage / "state.json").exists() and not (stage / "model.safetensors").exists()
    assert json.loads((stage / "state.json").read_text())["step"] == 1
    monkeypatch.undo()
    assert _shift(data, out, "--sources", "alpha", "beta", recipes=("r2",)) == 0
    result = json.loads((out / "shift.json").read_text())
    assert [f["status"] for f in result["folds"]] == ["resumed", "trained"]
    assert [f["train_sources"] for f in result["folds"]] == [["beta"], ["alpha"]]
    assert {"gamma", "delta"}.isdisjoint(result["folds"][0]["scored"])


def test_user_errors_are_one_clear_line(data, tmp_path, capsys):
    from wastenet.data.split import build_split

    cases = {
        ("--sources", "alpha", "zeta"): "zeta not among the manifest's sources",
        ("--holdout-only", "omega"): "omega not among",
        ("--resolution", "0"): "--resolution",
        ("--set", "sources=[alpha]"): "use --sources",
        ("--skip-train",): "no fold has a finished model",
    }
    for extra, message in cases.items():
        assert _shift(data, tmp_path / "x", *extra) == 2, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    bad = ["shift", "no_such_recipe", "--manifest", str(data["manifest"]), "--out", str(tmp_path)]
    assert main(bad) == 2 and "unknown preset" in capsys.readouterr().err
    typo = _recipe(
        tmp_path / "typo.yaml", tmp_path, "  - {name: m, epochs: 1, lr: 1.0, sources: [zeta]}\n"
    )
    bad[1] = str(typo)
    assert main(bad) == 2 and "sources named by recipe" in capsys.readouterr().err
    assert main(["shift", "--model", "m.safetensors", "--manifest", "m", "--out", "o"]) == 2
    assert "--trained-on" in capsys.readouterr().err
    one = build_split([data["tmp"] / "beta"], folds=0, workers=1, progress=False).manifest
    single = one.save(tmp_path / "one" / "manifest.json")
    args = ["shift", str(data["r2"]), "--manifest", str(single), "--out", str(tmp_path / "o")]
    assert main(args) == 2 and "at least two training sources" in capsys.readouterr().err


def test_model_written_before_its_calibration_is_calibrated_on_rerun(data, tmp_path):
    """Training stopped between writing the model and fitting its temperature: a rerun
    fits the temperature into that model instead of retraining or using it uncalibrated."""
    from wastenet.meta import read_bundle_meta
    from wastenet.models import load_bundle, save_bundle

    out = tmp_path / "cut"
    assert _shift(data, out, "--sources", "alpha", "beta", recipes=("r2",)) == 0
    model = out / "without-alpha" / "stage1" / "model.safetensors"
    other = out / "without-beta" / "stage1" / "model.safetensors"
    net, meta = load_bundle(model)
    fitted = meta.temperature
    assert "calibration" in meta.metrics
    meta.metrics.pop("calibration")
    meta.temperature = 1.0
    save_bundle(net, meta, model)
    other_bytes = other.read_bytes()

    assert _shift(data, out, "--sources", "alpha", "beta", recipes=("r2",)) == 0
    result = json.loads((out / "shift.json").read_text())
    assert [f["status"] for f in result["folds"]] == ["reused"] * 2
    again = read_bundle_meta(model)
    assert "calibration" in again.metrics
    assert again.temperature == pytest.approx(fitted, rel=1e-4)  # the same fit as training's
    assert other.read_bytes() == other_bytes  # a calibrated model is left as it was


def test_a_fold_kept_without_its_earlier_stages_weights_resumes_after_them(loso, data, tmp_path):
    """A fold copied elsewhere with only its last finished stage's model (the earlier stages'
    config and times, not their weights; the manifest spelled as a relative path) is reused
    as it is: nothing retrains and it scores the same. (A run made with a relative --out
    records the same paths wherever it is copied; this one's absolute paths are moved.)"""
    import os
    import shutil

    import yaml

    kept = tmp_path / "kept"
    shutil.copytree(loso["out"], kept)
    for fold in loso["result"]["folds"]:
        stage1 = kept / fold["name"] / "stage1"
        for weights in stage1.glob("*.safetensors"):
            weights.unlink()
        saved = yaml.safe_load((stage1 / "config.yaml").read_text())
        saved["manifest"] = os.path.relpath(data["manifest"])
        (stage1 / "config.yaml").write_text(yaml.safe_dump(saved))
        stage2 = stage1.parent / "stage2" / "config.yaml"
        stage2.write_text(stage2.read_text().replace(str(loso["out"]), str(kept)))
    assert _shift(data, kept, "--holdout-only", "delta", "--resolution", "12.5") == 0
    again = json.loads((kept / "shift.json").read_text())
    for old, new in zip(loso["result"]["folds"], again["folds"], strict=True):
        assert [s["status"] for s in new["stages"]] == ["reused", "reused"]
        assert new["train_seconds"] == old["train_seconds"]
        assert new["scored"]["delta"]["top1_set"] == old["scored"]["delta"]["top1_set"]
        assert not (kept / new["name"] / "stage1" / "model.safetensors").exists()
