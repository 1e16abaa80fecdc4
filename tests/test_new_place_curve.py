"""benchmarks/new_place_curve.py: fine-tune a model on k photos of a source it never saw."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import load_benchmark
from wastenet.classes import CLASSES
from wastenet.data.manifest import Item, Manifest, load_manifest

pytest.importorskip("torch")
curve = load_benchmark("new_place_curve")


def crop(photo: str, i: int, split: str, source: str = "det") -> Item:
    return Item(
        path=f"/x/{Path(photo).stem}__{i}.jpg",
        source=source,
        labels=("metal",),
        sha256=f"{hash((photo, i)) & (2**64 - 1):064x}",
        split=split,
        origin={"photo": photo, "box": [0, 0, 10, 10]},
    )


def test_photos_are_drawn_whole_nested_and_the_unseen_items_dropped():
    items = [crop(f"/p/{n}.jpg", i, "train") for n in range(6) for i in range(2)]
    items += [crop("/p/v.jpg", 0, "val"), crop("/p/t.jpg", 0, "test")]
    items += [crop("/q/a.jpg", 0, "val", source="old"), crop("/q/b.jpg", 0, "test", source="old")]
    manifest = Manifest(items)
    order = curve.photo_order(manifest, "det", seed=3)
    assert sorted(order) == [f"/p/{n}.jpg" for n in range(6)]  # each photo once
    assert order == curve.photo_order(manifest, "det", seed=3)
    small = curve.new_place_manifest(manifest, "det", set(order[:2]))
    large = curve.new_place_manifest(manifest, "det", set(order[:4]))
    kept = {it.path for it in small.items(source="det")}
    assert len(kept) == 4  # both crops of each of the 2 photos
    assert kept < {it.path for it in large.items(source="det")}  # nested draws
    assert all(it.split == "train" for it in large.items(source="det"))  # no val/test left
    assert len(small.items(source="old")) == 2  # the other sources untouched


def trained_on(manifest: Path, tmp: Path, sources: list[str]) -> Path:
    from conftest import tiny_config
    from wastenet.train.loop import train

    phases = [{"name": "main", "epochs": 2, "lr": 3e-3}]
    cfg = tiny_config(manifest, tmp, sources=sources, phases=phases)
    train(cfg, tmp / "model", progress=False)
    return tmp / "model" / "model.safetensors"


def test_the_curve_fine_tunes_on_more_photos_and_scores_items_no_run_saw(
    two_source_manifest, tmp_path, monkeypatch
):
    model = trained_on(two_source_manifest, tmp_path, ["alpha"])
    out = tmp_path / "curve"
    argv = ["--model", str(model), "--manifest", str(two_source_manifest), "--source", "beta"]
    argv += ["--photos", "3", "10", "--epochs", "1", "--out", str(out)]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--results", str(tmp_path / "r.json")]
    assert curve.main(argv) == 0
    result = json.loads((out / "new_place_curve.json").read_text())
    assert json.loads((tmp_path / "r.json").read_text()) == result
    manifest = load_manifest(two_source_manifest)
    unseen = [it for it in manifest.items(source="beta") if it.split != "train"]
    assert [p["photos"] for p in result["points"]] == [0, 3, 10]
    assert [p["items"] for p in result["points"]] == [0, 3, 10]  # one item per photo here
    for p in result["points"]:
        assert p["new_place"]["n"] == len(unseen)  # the same unseen items every time
        assert 0.0 <= p["new_place"]["top1"] <= 1.0
        assert p["old_sources_test"]["n"] == len(manifest.items(split="test", source="alpha"))
    derived = load_manifest(out / "photos3" / "manifest.json")
    assert {it.split for it in derived.items(source="beta")} == {"train"}
    config = (out / "photos3" / "run" / "config.yaml").read_text()
    assert "- beta" in config and str(model) in config  # starts from the model, adds beta
    before = (out / "photos3" / "run" / "model.safetensors").stat().st_mtime_ns
    score = curve.score
    monkeypatch.setattr(curve, "score", lambda *a: pytest.fail("a finished point scored again"))
    assert curve.main(argv) == 0  # a second run reuses the finished fine-tunes and scores
    assert (out / "photos3" / "run" / "model.safetensors").stat().st_mtime_ns == before
    assert json.loads((out / "new_place_curve.json").read_text())["points"] == result["points"]
    (out / "scores" / "photos10.json").write_text(
        (out / "scores" / "photos3.json").read_text()
    )  # another model's scores under k = 10's name: not taken for its own
    monkeypatch.setattr(curve, "score", score)
    assert curve.main(argv) == 0
    again = json.loads((out / "new_place_curve.json").read_text())
    assert again["points"][2]["new_place"] == result["points"][2]["new_place"]


def test_a_model_that_saw_the_source_is_refused_and_is_the_reference(
    two_source_manifest, tmp_path, capsys
):
    full = trained_on(two_source_manifest, tmp_path / "full", ["alpha", "beta"])
    argv = ["--model", str(full), "--manifest", str(two_source_manifest), "--source", "beta"]
    assert curve.main([*argv, "--out", str(tmp_path / "c")]) == 2
    assert "was trained on beta: it is no new place for it" in capsys.readouterr().err
    unseen = trained_on(two_source_manifest, tmp_path / "unseen", ["alpha"])
    argv = ["--model", str(unseen), "--manifest", str(two_source_manifest), "--source", "beta"]
    argv += ["--photos", "0", "--out", str(tmp_path / "r")]
    assert curve.main([*argv, "--reference", str(unseen)]) == 2
    assert "was not trained on beta: it is no reference for it" in capsys.readouterr().err
    assert curve.main([*argv, "--reference", str(full)]) == 0
    assert "| all, full recipe |" in capsys.readouterr().out
    result = json.loads((tmp_path / "r" / "new_place_curve.json").read_text())
    reference, start = result["reference"], result["points"][0]
    assert reference["model"] == str(full) and reference["photos"] == result["photos_available"]
    assert reference["new_place"]["n"] == start["new_place"]["n"]  # the same unseen items
    assert reference["old_sources_test"]["n"] == start["old_sources_test"]["n"]


def test_self_training_labels_the_photos_with_the_model_where_it_is_sure(
    two_source_manifest, tmp_path, capsys
):
    from wastenet.evaluate.predict import open_engine, predict_items

    model = trained_on(two_source_manifest, tmp_path, ["alpha"])
    manifest = load_manifest(two_source_manifest)
    pool = manifest.items(split="train", source="beta")
    pred = predict_items(open_engine(model), pool)
    guessed = {it.path: CLASSES[i] for it, i in zip(pred.items, pred.probs.argmax(1), strict=True)}

    every, stats = curve.pseudo_labelled(manifest, "beta", model, 0.0, None)
    beta = every.items(source="beta")
    assert {it.split for it in beta} == {"train"} and len(beta) == len(pool)  # val/test gone
    assert {it.path: it.label for it in beta} == guessed  # the model's labels, not the truth
    truth = {it.path: it.label for it in pool}
    assert stats["kept"] == len(pool) and stats["pool_outliers"] == 0
    assert stats["right"] == sum(guessed[p] == truth[p] for p in truth)
    assert every.items(source="alpha") == manifest.items(source="alpha")
    mixed, stats = curve.pseudo_labelled(manifest, "beta", model, 0.0, None, shuffle_seed=1)
    shuffled = {it.path: it.label for it in mixed.items(source="beta")}
    assert shuffled.keys() == guessed.keys() and shuffled != guessed and stats["shuffled"]
    assert sorted(shuffled.values()) == sorted(guessed.values())  # the same labels, moved
    none, stats = curve.pseudo_labelled(manifest, "beta", model, 1.01, None)
    assert none.items(source="beta") == [] and stats["kept"] == 0

    argv = ["--model", str(model), "--manifest", str(two_source_manifest), "--source", "beta"]
    argv += ["--photos", "0", "--pseudo-labels", "0", "--epochs", "1", "--out", str(tmp_path / "c")]
    assert curve.main([*argv, "--shuffled-control"]) == 0
    printed = capsys.readouterr().out
    assert "| all, unlabelled (sureness >= 0) |" in printed
    assert "| all, labels shuffled (sureness >= 0) |" in printed
    points = json.loads((tmp_path / "c" / "new_place_curve.json").read_text())["points"]
    assert [p["pseudo_labels"]["shuffled"] for p in points[1:]] == [False, True]
    assert points[1]["pseudo_labels"]["kept"] == len(pool) and points[1]["train_seconds"] > 0
    assert curve.main(argv) == 0  # without the control: one self-training point, reused
    points = json.loads((tmp_path / "c" / "new_place_curve.json").read_text())["points"]
    assert [p["pseudo_labels"]["shuffled"] for p in points[1:]] == [False]
