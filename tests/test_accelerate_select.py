"""The bin's engine choice: the fastest verified artifact of the bundle that runs here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from wastenet.accelerate import select
from wastenet.errors import ModelFileError
from wastenet.runtime.app import BinOptions, run_bin

AVX2_ONLY = {"avx2", "fma", "sse4_2"}
VNNI = AVX2_ONLY | {"avx512f", "avx512_vnni"}


def make_bundle(tmp_path: Path, model: Path, verified: dict[str, bool] | None) -> Path:
    """A bundle folder: the FP32 ONNX, an INT8 twin (a real ONNX), and verify.json."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    ref = bundle / "m.onnx"
    shutil.copy(model, ref)
    shutil.copy(model, bundle / "m.int8.onnx")
    (bundle / "README.md").write_text("not an engine")
    if verified is not None:
        rows = [{"artifact": f"/elsewhere/{name}", "passed": ok} for name, ok in verified.items()]
        (bundle / select.VERIFY_FILE).write_text(json.dumps({"max_drop": 0.3, "rows": rows}))
    return ref


def test_unverified_artifacts_are_never_candidates(tmp_path, flat_colour_model):
    ref = make_bundle(tmp_path, flat_colour_model, None)
    cands = select.candidates(ref, VNNI)
    assert [(c.path.name, c.skipped) for c in cands] == [
        ("m.onnx", None),
        ("m.int8.onnx", "not verified"),
    ]
    choice = select.choose_engine(ref, cache=tmp_path / "cache.json")
    assert choice.path == ref and "only engine" in choice.reason
    assert not (tmp_path / "cache.json").exists()  # nothing to measure


def test_failed_verify_and_saturating_cpu_skip_int8(tmp_path, flat_colour_model):
    ref = make_bundle(tmp_path, flat_colour_model, {"m.int8.onnx": False})
    assert select.candidates(ref, VNNI)[1].skipped == "failed verify"
    (ref.parent / select.VERIFY_FILE).write_text(
        json.dumps({"rows": [{"artifact": "m.int8.onnx", "passed": True}]})
    )
    assert select.candidates(ref, VNNI)[1].skipped is None
    assert "VNNI" in select.candidates(ref, AVX2_ONLY)[1].skipped


def test_fastest_wins_and_the_measurement_is_cached(tmp_path, flat_colour_model, monkeypatch):
    ref = make_bundle(tmp_path, flat_colour_model, {"m.int8.onnx": True})
    monkeypatch.setattr(select, "cpu_flags", lambda: VNNI)
    speeds = {"m.onnx": 20.0, "m.int8.onnx": 8.0}
    calls = []

    def fake_time(path, threads=0):
        calls.append(path.name)
        return speeds[path.name]

    monkeypatch.setattr(select, "time_engine", fake_time)
    cache = tmp_path / "cache.json"
    choice = select.choose_engine(ref, cache=cache)
    assert choice.path.name == "m.int8.onnx"
    assert "8.0 ms against 20.0 ms" in choice.reason and "measured now" in choice.reason
    assert sorted(calls) == ["m.int8.onnx", "m.onnx"]
    calls.clear()
    again = select.choose_engine(ref, cache=cache)
    assert again.path.name == "m.int8.onnx" and "(cached)" in again.reason and calls == []
    # a changed artifact is a new key: measured again
    (ref.parent / "m.int8.onnx").write_bytes((ref.parent / "m.int8.onnx").read_bytes())
    speeds["m.int8.onnx"] = 19.5  # within 5 % of FP32: the reference keeps the tie
    tie = select.choose_engine(ref, cache=cache)
    assert tie.path == ref and calls
    assert any(line.startswith(" * m.onnx") for line in select.describe(tie))


def test_real_timing_and_a_broken_cache_file(tmp_path, flat_colour_model, monkeypatch):
    ref = make_bundle(tmp_path, flat_colour_model, {"m.int8.onnx": True})
    monkeypatch.setattr(select, "cpu_flags", lambda: VNNI)
    cache = tmp_path / "cache.json"
    cache.write_text("{not json")
    choice = select.choose_engine(ref, cache=cache)
    assert all(c.median_ms > 0 for c in choice.candidates)
    assert set(json.loads(cache.read_text()).popitem()[1]) == {"m.onnx", "m.int8.onnx"}


def test_a_malformed_verify_file_is_one_clear_error(tmp_path, flat_colour_model):
    ref = make_bundle(tmp_path, flat_colour_model, None)
    (ref.parent / select.VERIFY_FILE).write_text('{"rows": [{"passed": true}]}')
    with pytest.raises(ModelFileError, match="not a wastenet verify result"):
        select.candidates(ref)


def test_the_bin_prints_and_records_its_engine(tmp_path, flat_colour_model, monkeypatch):
    ref = make_bundle(tmp_path, flat_colour_model, {"m.int8.onnx": True})
    monkeypatch.setattr(select, "cpu_flags", lambda: VNNI)
    monkeypatch.setattr(
        select, "time_engine", lambda p, threads=0: 5.0 if "int8" in p.name else 9.0
    )
    monkeypatch.setenv("WASTENET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("wastenet.runtime.app.DEFAULT_MODEL", ref)
    lines: list[str] = []
    run_bin(BinOptions(max_frames=3, headless=True, run_dir=str(tmp_path / "run")), lines.append)
    assert any(line.startswith("engine: m.int8.onnx (fastest verified") for line in lines)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["model"].endswith("m.int8.onnx")
    assert record["engine_choice"]["candidates"][0]["path"] == "m.onnx"
    # --model bypasses the choice
    lines.clear()
    opts = BinOptions(model=str(ref), max_frames=3, headless=True, run_dir=str(tmp_path / "r2"))
    run_bin(opts, lines.append)
    assert not any(line.startswith("engine:") for line in lines)
