"""Reviewing the bin's samples: the sheet, labels stored all or none, the bin's accuracy on
them, eviction sparing them, and the export a data split reads."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from wastenet.classes import CLASSES
from wastenet.cli import main
from wastenet.runtime import review
from wastenet.runtime.store import SampleStore

# (the bin's answer, the label a person gives); "not sure" is the bin declining
ANSWERS = [
    ("glass", "glass"),
    ("glass", "plastic"),
    ("not sure", "plastic"),
    ("metal", "metal"),
    ("not sure", "ood"),
    ("paper", "ood"),
    ("paper", "ignore"),
    ("cardboard", None),
]


def frame(v: int) -> np.ndarray:
    return np.random.default_rng(v).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def make_store(root: Path, answers=ANSWERS) -> list[str]:
    """A real store holding one sample per answer; returns their image names, in order."""
    store = SampleStore(root, model_version="lite0@abc")
    probs = np.full(len(CLASSES), 0.2, np.float32)
    for i, (answer, _) in enumerate(answers):
        store.offer(frame(i), answer, probs, None, frame_index=i, ts=1000.0 + i)
    names = [r["image_path"] for r in store.rows()]
    store.close()
    return names


def fill(sheet: Path, labels: list[str | None]) -> None:
    rows = list(csv.DictReader(sheet.open(newline="")))
    for row, label in zip(rows, labels, strict=True):
        row["label"] = label or ""
    with sheet.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def cli(*args: str) -> int:
    return main(["samples", *map(str, args)])


def test_sheet_label_summary_round_trip(tmp_path, capsys):
    store_dir = tmp_path / "store"
    names = make_store(store_dir)
    assert cli("sheet", store_dir) == 0
    sheet, page = store_dir / "review" / "labels.csv", store_dir / "review" / "index.html"
    rows = list(csv.DictReader(sheet.open(newline="")))
    assert [r["image"] for r in rows] == names and {r["label"] for r in rows} == {""}
    assert rows[2]["prediction"] == "not sure" and rows[0]["model_version"] == "lite0@abc"
    sources = re.findall(r'<img src="([^"]+)"', page.read_text())
    assert len(sources) == len(names) and all((page.parent / s).is_file() for s in sources)

    fill(sheet, [" Glass ", *(label for _, label in ANSWERS[1:])])  # any case, any spaces
    assert cli("label", store_dir, sheet) == 0
    store = SampleStore(store_dir)
    assert [r["label"] for r in store.rows()] == [label for _, label in ANSWERS]
    stats = review.summarise(store.rows())
    store.close()
    v = stats["by_model_version"]["lite0@abc"]
    # classes: glass right, glass wrong, not sure on plastic, metal right; outliers: 1 of 2
    assert (v["n"], v["right"], v["not_sure"], v["ood_n"], v["ood_not_sure"]) == (4, 2, 1, 2, 1)
    assert v["right_ci95"] == pytest.approx((0.150, 0.850), abs=0.001)  # Wilson, 2 of 4
    assert stats["labels"]["not reviewed"] == 1 and stats["labels"]["ignore"] == 1
    out = capsys.readouterr().out
    assert "stored 7 labels from 8 rows" in out and "right on 2 of 4 labelled items" in out

    # a new sheet keeps what was stored; --unreviewed lists only the unlabelled sample
    assert cli("sheet", store_dir) == 2  # the filled-in sheet is not overwritten
    assert "exists and may hold labels" in capsys.readouterr().err
    assert cli("sheet", store_dir, "--force") == 0
    assert [r["label"] for r in csv.DictReader(sheet.open())][:2] == ["glass", "plastic"]
    assert cli("sheet", store_dir, "--unreviewed", "--force") == 0
    assert [r["image"] for r in csv.DictReader(sheet.open())] == [names[-1]]


def test_a_bad_sheet_stores_nothing(tmp_path, capsys):
    store_dir = tmp_path / "store"
    names = make_store(store_dir)
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"image,label\n{names[0]},glass\n{names[1]},glas\n{names[0]},metal\n,paper\n{names[2]},\n"
    )
    assert cli("label", store_dir, bad) == 2
    err = capsys.readouterr().err
    assert "nothing stored, 3 bad rows" in err and "Traceback" not in err
    assert "line 3: 'glas' is not a label" in err and f"line 4: {names[0]} appears twice" in err
    assert "line 5: no image name" in err

    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"image,label\n{names[0]},glass\nnot-a-sample.jpg,metal\n")
    assert cli("label", store_dir, unknown) == 2
    assert "no sample named not-a-sample.jpg" in capsys.readouterr().err
    store = SampleStore(store_dir)
    assert all(r["label"] is None for r in store.rows())  # neither sheet stored anything
    store.close()

    for text, message in (
        ("image;prediction\nx;glass\n", "no label column"),
        (b"\xff\xfe", "UTF-8"),
    ):
        sheet = tmp_path / "other.csv"
        sheet.write_bytes(text if isinstance(text, bytes) else text.encode())
        assert cli("label", store_dir, sheet) == 2
        assert message in capsys.readouterr().err


def test_a_spreadsheet_s_sheet_with_a_byte_order_mark_and_semicolons(tmp_path):
    store_dir = tmp_path / "store"
    names = make_store(store_dir)
    sheet = tmp_path / "excel.csv"
    sheet.write_bytes(f"\ufeffid;image;label\r\n1;{names[0]};Metal\r\n".encode())
    assert review.read_sheet(sheet) == {names[0]: "metal"}


def test_no_store_is_refused_and_none_is_made(tmp_path, capsys):
    assert cli("summary", tmp_path / "nothing") == 2
    assert "no sample store here" in capsys.readouterr().err
    assert not (tmp_path / "nothing").exists()


def test_eviction_takes_unlabelled_samples_first_and_their_labels_with_them(tmp_path):
    store_dir = tmp_path / "store"
    names = make_store(store_dir, [("glass", None)] * 4)
    store = SampleStore(store_dir)
    store.set_labels({names[0]: "glass", names[2]: "metal"})
    sizes = {r["image_path"]: r["bytes"] for r in store.rows()}
    store.evict(sizes[names[0]] + sizes[names[2]])  # room for two samples
    assert [(r["image_path"], r["label"]) for r in store.rows()] == [
        (names[0], "glass"),
        (names[2], "metal"),
    ]
    store.evict(0)
    assert store.rows() == [] and store.db.execute("SELECT * FROM labels").fetchall() == []
    store.close()


def test_export_is_a_source_a_data_split_reads(tmp_path, capsys):
    from wastenet.data.sources import index_source, load_source

    store_dir = tmp_path / "store"
    names = make_store(store_dir)
    out = tmp_path / "bin-source"
    assert cli("export", store_dir, "--out", out) == 2  # nothing labelled yet
    assert "nothing to export" in capsys.readouterr().err and not out.exists()

    store = SampleStore(store_dir)
    store.set_labels({n: label for n, (_, label) in zip(names, ANSWERS, strict=True)})
    store.close()
    assert cli("export", store_dir, "--out", out, "--name", "kitchen") == 0
    source = load_source(out / "source.yaml")
    assert source.name == "kitchen"
    found = index_source(source)
    labelled = {Path(f.path).name: (f.rule.kind, f.rule.labels) for f in found.files}
    assert labelled == {
        names[0]: ("labels", ("glass",)),
        names[1]: ("labels", ("plastic",)),
        names[2]: ("labels", ("plastic",)),
        names[3]: ("labels", ("metal",)),
        names[4]: ("ood", ()),
        names[5]: ("ood", ()),
    }  # ignore and the unreviewed sample are left out

    # a relabelled sample moves when the export is made again over the earlier one
    store = SampleStore(store_dir)
    store.set_labels({names[1]: "glass", names[4]: None})
    store.close()
    assert cli("export", store_dir, "--out", out) == 0
    assert (out / "glass" / names[1]).is_file() and not (out / "plastic" / names[1]).exists()
    assert not (out / "ood" / names[4]).exists()
    assert not list(tmp_path.glob("bin-source.*"))  # no partial or old folder left

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert cli("export", store_dir, "--out", foreign) == 2
    assert (foreign / "notes.txt").read_text() == "keep me"
    assert "not an earlier `wastenet samples export`" in capsys.readouterr().err


def test_self_labelled_export_is_a_train_only_source_of_the_sure_unreviewed(tmp_path, capsys):
    from wastenet.data.split import build_split

    store_dir = tmp_path / "store"
    # (the bin's answer, its sureness, a person's label)
    kept = [
        ("glass", 0.95, None),  # sure, nobody looked: exported as glass
        ("metal", 0.97, "plastic"),  # reviewed: the person's label is not replaced
        ("paper", 0.60, None),  # not sure enough
        ("cardboard", 0.92, "ignore"),  # a person said leave it out
        ("plastic", 0.90, None),  # exactly at the threshold: exported
    ]
    store = SampleStore(store_dir, model_version="lite0@abc")
    probs = np.full(len(CLASSES), 0.2, np.float32)
    for i, (answer, sure, _) in enumerate(kept):
        store.offer(frame(i), answer, probs, None, frame_index=i, ts=1000.0 + i, sureness=sure)
    names = [r["image_path"] for r in store.rows()]
    store.set_labels({n: label for n, (*_, label) in zip(names, kept, strict=True) if label})
    store.close()

    out = tmp_path / "bin-self"
    assert cli("summary", store_dir) == 0
    assert "2 samples nobody reviewed that the bin was at least 0.9 sure of" in (
        capsys.readouterr().out
    )
    assert cli("export", store_dir, "--self-label", "0.9", "--out", out) == 0
    assert "2 samples labelled by the bin itself" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg")) == sorted(
        [f"glass/{names[0]}", f"plastic/{names[4]}"]
    )
    assert "at least 0.9 sure" in (out / "source.yaml").read_text()
    result = build_split([out / "source.yaml"], folds=0, workers=1, progress=False)
    assert {it.split for it in result.manifest.items()} == {"train"}
    assert result.manifest.sources[0]["name"] == "bin-store-self-labelled"

    assert cli("export", store_dir, "--self-label", "0.99", "--out", tmp_path / "none") == 2
    assert "--store-policy uncertain+every:K" in capsys.readouterr().err
    assert cli("export", store_dir, "--self-label", "1.5", "--out", tmp_path / "none") == 2
    assert "give a sureness in (0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_a_store_in_use_is_refused_in_one_line(tmp_path, capsys):
    store_dir = tmp_path / "store"
    make_store(store_dir)
    running = SampleStore(store_dir)  # the bin, still running
    try:
        assert cli("summary", store_dir) == 2
    finally:
        running.close()
    assert "in use by another process" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a label"):
        review.parse_label("bottle")


def test_the_page_of_images_shows_every_sample_in_chromium(browser, tmp_path):
    from conftest import page_errors

    store_dir = tmp_path / "store"
    make_store(store_dir)
    assert cli("sheet", store_dir) == 0
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = page_errors(page)
    page.goto((store_dir / "review" / "index.html").as_uri(), wait_until="load")
    images = page.locator("figure img")
    assert images.count() == len(ANSWERS)
    for i in range(len(ANSWERS)):
        images.nth(i).scroll_into_view_if_needed()
        drawn = images.nth(i).evaluate("img => img.complete && img.naturalWidth")
        assert drawn == 64, f"image {i} not drawn"  # the stored frame, 64 pixels wide
    assert page.locator("figcaption").nth(2).inner_text() == "3: not sure 0.20"
    page.close()
    assert errors == []
