"""``wastenet report``: every table and figure from each kind of result, provenance beside
each number, 'not measured yet' for what no input holds, and the BENCHMARKS.md page."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from report_fixtures import bench_rows, make_results
from wastenet import onnx_file
from wastenet import provenance as prov
from wastenet.analysis import report_benchmarks, report_inputs, report_render, report_shipped
from wastenet.cli import main

REPO = Path(__file__).resolve().parents[1]
FIGURES = {"fig-8", "fig-9-paper", "fig-9-1", "fig-10-1", "fig-10-2", "fig-12", "fig-14",
           "fig-15", "fig-eq2"}  # fmt: skip
SECTIONS = ("Table 4", "Figure 8", "Table 5", "Figure 9", "Tables 6 and 7", "Figures 10/13",
            "Figure 12", "Figure 14", "Figure 15", "Equation 2")  # fmt: skip


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return make_results(tmp_path_factory.mktemp("results"))


def _report(out: Path, *args: str) -> tuple[str, str]:
    assert main(["report", "--out", str(out), *args]) == 0
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def test_every_table_and_figure_from_generated_results(generated, tmp_path, capsys):
    md, page = _report(tmp_path / "out", "--no-defaults", "--results", str(generated))
    assert "10 results read (1 other JSON files skipped)" in capsys.readouterr().out
    for title in SECTIONS:
        assert title in md and title in page
    assert {p.stem for p in (tmp_path / "out" / "figures").glob("*.svg")} == FIGURES
    assert page.count('<figure class="plot"') == len(FIGURES)
    # the numbers of each input, in its table
    for text in ("95.0 % (76.0-99.0)", "85.0 % (64.0-95.0)", "| 71.4 % | 85.7 % |",
                 "| muell (holdout; model m.onnx) | 20 |",
                 "| inferring (MAXN) | 4.80 | 16.0 | 3.33 | 0.300 |", "| 0.360 | 0.353 | 1.006 |",
                 "| 1.20 | FAIL |", "| int8_ac/model.int8.xml | on | 95.0 | 196/300 |",
                 "| CPU package inferring (RAPL) | 20.00 | 50.0 | 2.50 |"):  # fmt: skip
        assert text in md, text
    # and where it came from: command, date, machine; 'unknown' for a file without them
    for command in ("wastenet evaluate runs/m/export/model.onnx", "wastenet run --source",
                    "wastenet power protocol", "wastenet shift --model", "wastenet train"):  # fmt: skip
        assert command in md
    assert "2026-01-02T03:04:05+00:00, on test machine, 2 cores" in md
    assert "verify/verify.json: `unknown`, unknown, on unknown" in md
    assert "notes.json" in md  # found, not a result: listed, not silently dropped
    # self-contained: no script, nothing fetched
    assert "<script" not in page
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page)


def test_missing_inputs_read_not_measured_yet(tmp_path):
    (tmp_path / "empty").mkdir()
    md, page = _report(tmp_path / "out", "--no-defaults", "--results", str(tmp_path / "empty"))
    for line in ("| this project's bin, the 40-item protocol | not measured yet |",
                 "| this project's board | not measured yet |",
                 "| this project's bin runs | not measured yet |",
                 "*Figures 10/13: per category*: not measured yet"):  # fmt: skip
        assert line in md
    assert 'class="missing"' in page
    # only the paper's own figures are drawn, and they say the paper
    drawn = {p.stem for p in (tmp_path / "out" / "figures").glob("*.svg")}
    assert drawn == {"fig-8", "fig-9-paper", "fig-14", "fig-15", "fig-eq2"}


def test_tables_only_without_matplotlib(generated, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    report = report_render.build(report_inputs.collect([generated], defaults=False))
    assert not report.plots
    paths = report_render.write(report, tmp_path / "out")
    page = paths["html"].read_text()
    assert "matplotlib is not installed" in page and '<figure class="plot"' not in page
    assert "| inferring (MAXN) | 4.80 |" in paths["md"].read_text()
    assert not list((tmp_path / "out" / "figures").iterdir())


@pytest.mark.skipif(
    not (REPO / "benchmarks" / "results").is_dir(), reason="no committed benchmarks/results"
)
def test_committed_results_and_the_benchmarks_page(tmp_path):
    bm = tmp_path / "BENCHMARKS.md"
    md, _ = _report(tmp_path / "out", "--benchmarks-md", str(bm))
    # the shipped model, from the bundled evaluation and ONNX file
    assert re.search(r"\| \*\*the shipped model\*\* \(bundled\) \| \d+\.\d\d M \| \d", md)
    page = bm.read_text()
    assert len(page.splitlines()) < 250
    assert report_benchmarks.COMMAND in page
    assert re.search(r"\| trashnet \| \d+ \| \d+\.\d % \(\d+\.\d-\d+\.\d\) \|", page)
    assert page.count("(recommended)**") >= 1
    # the bundled engines' loop: per-stage medians, the FP32 ONNX next to the INT8 engine
    stages = page.split("| engine | capture |", 1)[1].split("\n\n", 1)[0]
    assert "wastenet-lite0.onnx |" in stages and "wastenet-lite0.int8.xml |" in stages
    assert not re.search(r"(?<![\w.])/(?:work|home|root|tmp|usr|mnt)/", page)  # no machine path
    assert not re.search(r"\b[0-9a-f]{40}\b", page)  # no commit hash


def test_onnx_parameters_and_metadata_without_onnx():
    onnx = pytest.importorskip("onnx")
    import numpy as np

    path = report_inputs.BUNDLED / "wastenet-lite0.onnx"
    model = onnx.load(str(path))
    expected = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert onnx_file.count_onnx_parameters(path) == expected
    meta = onnx_file.read_onnx_metadata(path)
    assert meta == {p.key: p.value for p in model.metadata_props}
    stored = json.loads(meta["wastenet"])
    read = onnx_file.read_onnx_meta(path)
    assert read.source_hash == stored["source_hash"] and read.labels == stored["labels"]


def test_onnx_meta_of_a_file_that_is_not_one_is_a_clear_error(tmp_path):
    from wastenet.errors import ModelFileError

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff" * 40)
    missing = tmp_path / "missing.onnx"
    readers = (onnx_file.read_onnx_meta, onnx_file.read_onnx_metadata,
               onnx_file.count_onnx_parameters)  # fmt: skip
    for read in readers:
        for path in (junk, missing):
            with pytest.raises(ModelFileError, match=path.name):
                read(path)


def test_bench_rows_pair_with_the_verify_file_of_the_same_run(tmp_path):
    """Two verify files hold an artifact of the same tail; the one named like the bench
    file (engines_b <-> verify_b) is the one paired."""
    bench = {"rows": bench_rows()}
    row = {"format": "onnx", "accuracy": 90.0, "reference_accuracy": 90.0, "passed": True}
    files = {
        "engines_b.json": bench,
        "verify_a.json": {"rows": [{**row, "artifact": "a/export/model.onnx", "drop_points": 5.0}]},
        "verify_b.json": {"rows": [{**row, "artifact": "b/export/model.onnx", "drop_points": 0.5}]},
    }
    for name, data in files.items():
        (tmp_path / name).write_text(json.dumps(data))
    inputs = report_inputs.collect([tmp_path], defaults=False)
    from wastenet.analysis.report_speed import match_verify

    (bench_source,) = inputs.of("bench")
    matched = match_verify(bench_source, inputs.of("verify"))
    assert matched[0] is None  # the eager reference has no verify row
    assert matched[1][0]["drop_points"] == 0.5 and matched[1][1].label.endswith("verify_b.json")


def test_command_line_as_typed():
    assert prov.command_line(["/venv/bin/wastenet", "bench", "a b"]) == "wastenet bench 'a b'"
    assert prov.command_line(["/x/src/wastenet/cli.py", "train", "p"]) == "wastenet train p"
    script = Path.cwd() / "benchmarks" / "bench_loop.py"
    assert prov.command_line([str(script), "--frames", "3"]) == (
        "python benchmarks/bench_loop.py --frames 3"
    )
    p = prov.provenance(["wastenet", "report"])
    assert set(p) >= {"command", "date", "machine"} and "cores" in p["machine"]


def test_writers_record_provenance(tmp_path):
    from wastenet.accelerate.bench import write_results

    write_results(bench_rows(), tmp_path)
    record = json.loads((tmp_path / "bench.json").read_text())["provenance"]
    assert record["command"] and record["date"][:2] == "20" and record["machine"]


def test_a_folder_named_twice_is_read_once(tmp_path):
    """`--results benchmarks/results` next to the defaults (which read it too): each file
    is listed once, read or not read."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "other.json").write_text(json.dumps({"something": "else"}))
    (tmp_path / "bench.json").write_text(json.dumps({"rows": bench_rows()}))
    inputs = report_inputs.collect([tmp_path, tmp_path / "sub" / ".."], defaults=False)

    assert [Path(p).name for p in inputs.ignored] == ["other.json"]
    assert [s.kind for s in inputs.sources] == ["bench"]


def test_the_fp32_model_verify_measured_against_is_the_reference_row(tmp_path):
    """A bench of the bundle (FP32 ONNX + INT8) with a verify file whose rows name that
    ONNX as their reference: the ONNX row reads "reference", not "not measured yet"."""
    from wastenet.analysis.report_model import Report
    from wastenet.analysis.report_speed import engine_rows, verdict

    rows = [r for r in bench_rows() if r["format"] != "torch"][:2]  # ONNX FP32, an INT8
    verify = {"rows": [{"artifact": "runs/m/int8_ac/model.int8.xml", "format": "openvino-int8",
                        "reference": "model.onnx", "accuracy": 94.8, "reference_accuracy": 95.0,
                        "drop_points": 0.2, "passed": True}]}  # fmt: skip
    (tmp_path / "engines_x.json").write_text(json.dumps({"rows": rows}))
    (tmp_path / "verify_x.json").write_text(json.dumps(verify))
    inputs = report_inputs.collect([tmp_path], defaults=False)
    (bench,) = inputs.of("bench")
    out, _ = engine_rows(Report(inputs, plots=False), bench)
    assert [verdict(r) for r in out] == ["reference", "pass"]
    # without a verify file naming it, the ONNX row is not a reference
    (tmp_path / "verify_x.json").unlink()
    inputs = report_inputs.collect([tmp_path], defaults=False)
    out, _ = engine_rows(Report(inputs, plots=False), inputs.of("bench")[0])
    assert [verdict(r) for r in out] == ["not measured yet", "not measured yet"]


def _soak(exit_code: int = 0) -> dict:
    """A soak result as benchmarks/bench_soak.py writes it (three samples)."""
    samples = [{"t_s": t, "rss_mb": 190.0, "fps": 15.0, "client_frames": [150, 150],
                "store_rows": 600} for t in (600, 1200, 1800)]  # fmt: skip
    checks = {
        "memory": {"window_s": 600.0, "min_mb": 190.0, "max_mb": 191.0, "spread_mb": 1.0,
                   "whole_run_mb": [188.7, 191.0], "passed": True},
        "fps": {"first_third": 15.0, "last_third": 15.0, "median": 15.0, "lowest": 14.5,
                "passed": True},
        "rotation": {"files": {"timings.jsonl": 5e5, "timings.jsonl.1": 1e6}, "rotated": True,
                     "passed": True},
        "store": {"rows": 600, "bytes": 9.9e6, "missing_images": 0, "tmp_files": 0,
                  "unnamed_files": 0, "quota_bytes": 10_000_000, "passed": True},
        "clients": {"frames": [27000, 27000], "passed": True},
        "exit": {"exit_code": exit_code, "passed": exit_code == 0},
    }  # fmt: skip
    settings = {"minutes": 30.0, "fps": 15.0, "quota_mb": 10.0, "rotate_bytes": 1_000_000}
    return {
        "settings": settings, "samples": samples, "checks": checks, "passed": exit_code == 0,
        "provenance": {"command": "python benchmarks/bench_soak.py --minutes 30",
                       "date": "2026-12-02", "machine": "a test machine"},
    }  # fmt: skip


def test_soak_result_on_the_benchmarks_page(tmp_path):
    (tmp_path / "soak.json").write_text(json.dumps(_soak(exit_code=4)))
    inputs = report_inputs.collect([tmp_path], defaults=False)
    assert [s.kind for s in inputs.sources] == ["soak"]
    page = report_benchmarks.render(inputs)
    section = page.split("### A 30-minute run", 1)[1].split("###", 1)[0]
    assert "| memory | RSS spread 1.0 MB over the last 10 min" in section
    assert "| exit | code 4 | NO |" in section and "| store |" in section
    assert "`python benchmarks/bench_soak.py --minutes 30`" in section
    empty = report_benchmarks.render(report_inputs.collect([], defaults=False))
    assert "### A long run\n\nnot measured yet." in empty


def test_machine_line_names_the_cpu_features_timings_depend_on():
    x86 = "processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f avx512_vnni avx512_bf16\n"
    assert prov.simd_features(x86) == "AVX2 + AVX-512 + VNNI + BF16"
    assert prov.simd_features("flags\t: fpu sse4_2 avx2 fma\n") == "AVX2"  # no VNNI: said so
    assert prov.simd_features("Features\t: fp asimd asimddp crc32\n") == "NEON + dot product"
    assert prov.simd_features("") == ""


def test_the_page_shows_only_the_shipped_models_scores_on_unseen_sources(tmp_path):
    """A ``wastenet shift --model`` result of an earlier model (kept under models/previous/)
    is not the shipped model's: the page leaves it to the experiments."""

    def shift(model: str, top1: float) -> dict:
        scored = {"muell": {"n": 409, "top1_set": top1, "top1_set_ci95": [top1 - 0.03, top1]}}
        fold = {"name": "model", "model": model, "status": "existing", "scored": scored}
        return {"format_version": 1, "mode": "existing", "recipes": [], "folds": [fold],
                "summary": {}, "threshold": 0.7}  # fmt: skip

    (tmp_path / "shipped.json").write_text(
        json.dumps(shift("src/wastenet/assets/model/wastenet-lite0.onnx", 0.861))
    )
    (tmp_path / "previous.json").write_text(
        json.dumps(shift("models/previous/wastenet-lite0-trashnet-web-mixed.onnx", 0.905))
    )
    inputs = report_inputs.collect([tmp_path], defaults=False)
    assert sorted(s.kind for s in inputs.sources) == ["shift", "shift"]
    section = "\n".join(report_shipped.unseen_lines(inputs))
    assert "| muell | 409 | 86.1 %" in section and "90.5 %" not in section


def test_the_pairing_with_the_previous_model_is_the_shipped_models_only(tmp_path):
    def compare(new: str, diff: float) -> dict:
        row = {"n": 1077, "difference_points": diff, "mcnemar_p": 0.14,
               "old": {"accuracy": 95.2}, "new": {"accuracy": 95.2 + diff}}  # fmt: skip
        return {"old": "models/previous/old.onnx", "new": new, "splits": ["val", "test"],
                "pooled": row, "per_source": {"trashnet": row}, "in_distribution_pooled": row,
                "in_distribution": ["trashnet", "web-mixed"], "ood_items": 691,
                "not_sure": {"old": {"threshold": 0.7, "ood_not_sure": 57.9, "refusals": 23.4},
                             "new": {"threshold": 0.7, "ood_not_sure": 64.1, "refusals": 14.7}},
                "ood_separation": {"old": {"auroc": 0.903}, "new": {"auroc": 0.891}}}  # fmt: skip

    (tmp_path / "a.json").write_text(json.dumps(compare(report_shipped.SHIPPED_MODEL, -0.9)))
    (tmp_path / "b.json").write_text(json.dumps(compare("runs/candidate/model.onnx", -3.3)))
    other_rule = compare(report_shipped.SHIPPED_MODEL, -4.4)  # an experiment's --sureness
    (tmp_path / "c.json").write_text(json.dumps({**other_rule, "sureness": "certainty@2"}))
    inputs = report_inputs.collect([tmp_path], defaults=False)
    assert [s.kind for s in inputs.sources] == ["compare_models"] * 3
    section = "\n".join(report_shipped.previous_lines(inputs))
    assert "| trashnet (val + test) | 1077 | 95.2 % | 94.3 % | -0.9 | 0.14 |" in section
    assert "the guard-rail**" in section and "-3.3" not in section and "-4.4" not in section
    assert "previous 57.9 % (refusing 23.4 % of the others), shipped 64.1 %" in section
    assert "AUROC: previous 0.903, shipped 0.891" in section


def test_the_loso_table_is_the_shipped_recipes_only(tmp_path):
    """A compare_shift result shows on the page only when its recipe after ends with the
    stage the shipped model was trained by; a partial table says which folds it lacks."""
    from wastenet.evaluate.shift_compare import compare

    def result(top1: float, recipes: list[str]) -> dict:
        scored = {"trashnetpp": {"role": "left_out", "n": 4081, "top1_set": top1,
                                 "top1_set_ci95": [top1 - 0.02, top1 + 0.02],
                                 "ood": {"n": 691, "not_sure_at_refusals": 0.5}}}  # fmt: skip
        fold = {"name": "without-trashnetpp", "left_out": ["trashnetpp"],
                "train_sources": ["trashnet", "web-mixed"], "scored": scored}  # fmt: skip
        return {"manifest_hash": "m", "recipes": recipes, "folds": [fold]}

    def written(after_recipes: list[str], top1: float) -> dict:
        before, after = result(0.522, ["old"]), result(top1, after_recipes)
        sides = {"before": {"results": ["b.json"], "recipes": ["old"]},
                 "after": {"results": ["a.json"], "recipes": after_recipes}}  # fmt: skip
        return {"provenance": {"command": "python benchmarks/compare_shift.py", "date": "d",
                               "machine": "m"}, **sides, **compare(before, after)}  # fmt: skip

    shipped = report_inputs.read_bundled()["meta"]["train_config"]["name"]
    (tmp_path / "a.json").write_text(json.dumps(written(["first", shipped], 0.801)))
    (tmp_path / "b.json").write_text(json.dumps(written(["first", "a_candidate"], 0.333)))
    inputs = report_inputs.collect([tmp_path], defaults=False)
    assert [s.kind for s in inputs.sources] == ["compare_shift"] * 2
    assert "not measured yet" in "\n".join(report_shipped.loso_lines(inputs))  # no model known
    inputs.model = report_inputs.read_bundled()
    section = "\n".join(report_shipped.loso_lines(inputs))
    assert "| trashnetpp | 4081 | 52.2 % (50.2-54.2) | 80.1 % (78.1-82.1) | +27.9 (" in section
    assert "33.3 %" not in section and f"after: first + {shipped}." in section
    assert "Folds measured: 1 of 3; not yet: trashnet, web-mixed." in section
    assert "lowest trashnetpp 80.1 % (not met)" in section  # decided: already under 85 %


def test_a_never_seen_row_names_what_it_measured():
    from wastenet.analysis.report_accuracy import _measured

    loso = {"mode": "loso", "recipes": ["lite0_multisource_75", "lite0_multisource_75_stage4"]}
    fold = {"name": "without-trashnetpp", "status": "trained"}
    assert _measured(loso, fold) == "without-trashnetpp of lite0_multisource_75_stage4"
    given = {"name": "without-trashnetpp", "status": "given", "model": "models/previous/m.onnx"}
    assert _measured(loso, given) == "model models/previous/m.onnx"  # --fold-model
    one = {"name": "model", "model": "runs/x/stage1/model.safetensors"}
    assert _measured({"mode": "existing"}, one) == "model runs/x/stage1/model.safetensors"
