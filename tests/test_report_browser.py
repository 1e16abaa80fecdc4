"""The report's HTML page in a real headless Chromium (Debian's ``chromium``, driven by
Playwright): it loads without console errors, every figure renders at a non-zero size,
and a screenshot is kept as a test artifact ($WASTENET_ARTIFACTS, else the test's tmp
folder; its path is printed and recorded as the ``screenshot`` property)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import page_errors
from report_fixtures import make_results
from wastenet.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("inputs", ["generated", "committed"])
def test_report_renders_in_chromium(inputs, browser, tmp_path, record_property):
    out = tmp_path / "report"
    if inputs == "generated":
        args = ["--no-defaults", "--results", str(make_results(tmp_path / "results"))]
    elif (REPO / "benchmarks" / "results").is_dir():
        args = []
    else:
        pytest.skip("no committed benchmarks/results")
    assert main(["report", "--out", str(out), *args]) == 0
    drawn = len(list((out / "figures").glob("*.svg")))
    assert drawn >= 5  # the paper's figures are drawn whatever the inputs

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors = page_errors(page)
    page.goto((out / "report.html").as_uri(), wait_until="load")

    figures = page.locator("figure.plot svg")
    assert figures.count() == drawn
    for i in range(drawn):
        box = figures.nth(i).bounding_box()
        assert box and box["width"] > 50 and box["height"] > 50, f"figure {i}: {box}"
    assert page.locator("table").count() >= 8
    folder = Path(os.environ.get("WASTENET_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"report-{inputs}.png"
    page.screenshot(path=str(shot), full_page=True)
    page.close()
    record_property("screenshot", str(shot))
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000
    assert errors == []
