"""The paper's real-world protocol over an outcomes CSV (table 6, figures 10/13)."""

import json

import pytest

from wastenet.errors import WasteNetError
from wastenet.evaluate.realworld import evaluate_realworld, read_outcomes, summarize


def write_paper_table6_csv(path):
    """40 items as in section 5.4.1: 33 right, 3 wrong for an identified cause, 4 plain wrong."""
    rows = ["item,true,predicted,error"]
    classes = ["cardboard", "glass", "metal", "paper", "plastic"]
    for i in range(33):
        c = classes[i % 5]
        rows.append(f"item{i},{c},{c},")
    rows += [
        "box1,cardboard,paper,zoom",
        "jar1,glass,metal,glare",
        "can1,metal,glass,glare",
        "box2,cardboard,paper,",
        "bottle1,plastic,glass,",
        "sheet1,paper,not sure,",
        "tin2,metal,plastic,",
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_table6_numbers_match_the_papers_definition(tmp_path):
    summary = summarize(read_outcomes(write_paper_table6_csv(tmp_path / "rw.csv")))
    assert summary["n"] == 40
    assert summary["accuracy_including_errors"] == pytest.approx(0.825)  # 33/40
    assert summary["accuracy_excluding_errors"] == pytest.approx(0.90)  # (33+3)/40
    assert summary["accuracy_on_items_without_errors"] == pytest.approx(33 / 37)
    assert summary["errors_by_cause"] == {"zoom": 1, "glare": 2}
    assert summary["not_sure"] == 1
    card = summary["per_category"]["cardboard"]
    assert card["total"] == 9 and card["correct"] == 7 and card["correct_excluding_errors"] == 8
    assert card["predicted_as"] == {"paper": 2}


def test_evaluate_realworld_writes_files(tmp_path):
    csv = write_paper_table6_csv(tmp_path / "rw.csv")
    evaluate_realworld(csv, tmp_path / "out")
    for name in ("realworld.json", "realworld.md", "realworld.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "realworld.json").read_text())["n"] == 40
    assert "90.0 %" in (tmp_path / "out" / "realworld.md").read_text()


@pytest.mark.parametrize(
    "content, message",
    [
        ("item,true\nx,glass\n", "lacks column"),
        ("item,true,predicted,error\nx,trash,glass,\n", "unknown true class"),
        ("item,true,predicted,error\nx,glass,bottle,\n", "unknown predicted class"),
        ("item,true,predicted,error\n", "no rows"),
    ],
)
def test_bad_outcomes_csv_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(WasteNetError, match=message):
        read_outcomes(path)
    with pytest.raises(WasteNetError, match="no such"):
        read_outcomes(tmp_path / "absent.csv")
