"""Timing files of a run: rotation at a size limit keeps the disk bounded and loses no line."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from wastenet.runtime.timings import RotatingFile, TimingsWriter, clock_anchor, read_clock


def read_lines(path):
    return path.read_text().splitlines() if path.exists() else []


def test_timings_rotate_at_the_limit_and_keep_n_old_files(tmp_path):
    writer = TimingsWriter(tmp_path, max_bytes=400, keep=2)
    for i in range(200):
        writer.frame(i, float(i), True, "glass", {"capture": 0.001, "inference": 0.02})
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("timings"))
    assert files == ["timings.jsonl", "timings.jsonl.1", "timings.jsonl.2"]  # at most 2 old
    newest_last = [tmp_path / f for f in ("timings.jsonl.2", "timings.jsonl.1", "timings.jsonl")]
    for path in newest_last:
        assert 0 < path.stat().st_size <= 400
    indices = [json.loads(line)["i"] for path in newest_last for line in read_lines(path)]
    # every line of the kept files is whole, in order, and none is missing between them
    assert indices == list(range(indices[0], 200)) and indices[0] > 0


def test_reopening_continues_the_size_count_and_actuations_rotate_too(tmp_path):
    line = json.dumps({"door": 0, "t": 1.0}) + "\n"
    for _ in range(3):  # three bin starts in the same run folder
        writer = TimingsWriter(tmp_path, max_bytes=len(line) * 4, keep=3)
        for _ in range(3):
            writer.actuation(json.loads(line))
        writer.close()
    kept = [tmp_path / "actuations.jsonl", *(tmp_path / f"actuations.jsonl.{i}" for i in (1, 2))]
    assert sum(len(read_lines(p)) for p in kept) == 9  # nothing lost, nothing over the limit
    assert all(p.stat().st_size <= len(line) * 4 for p in kept)


def test_a_line_over_the_limit_gets_a_file_of_its_own(tmp_path):
    log = RotatingFile(tmp_path / "x.jsonl", max_bytes=10, keep=3)
    for text in ("a\n", "b" * 30 + "\n", "c\n"):
        log.write(text)
    log.close()
    assert [read_lines(tmp_path / n) for n in ("x.jsonl.2", "x.jsonl.1", "x.jsonl")] == [
        ["a"],
        ["b" * 30],
        ["c"],
    ]
    with pytest.raises(ValueError):
        RotatingFile(tmp_path / "y.jsonl", max_bytes=0, keep=1)


def test_the_clock_anchor_pairs_the_monotonic_clock_with_utc():
    before_wall, before_mono = time.time(), time.perf_counter()
    clock = clock_anchor()
    after_mono, after_wall = time.perf_counter(), time.time()
    assert clock["monotonic"] == "time.perf_counter"
    assert before_mono <= clock["monotonic_s"] <= after_mono
    assert before_wall - 1e-6 <= clock["epoch_s"] <= after_wall + 1e-6
    assert clock["utc"].endswith("Z")
    utc = datetime.fromisoformat(clock["utc"].replace("Z", "+00:00"))
    assert utc.timestamp() == pytest.approx(clock["epoch_s"], abs=1e-6)
    assert clock["offset_s"] == pytest.approx(clock["epoch_s"] - clock["monotonic_s"], abs=2e-6)
    assert 0 <= clock["uncertainty_s"] < 0.05


def test_a_bin_run_records_its_clock_and_lines_up_with_wall_clock_samples(
    tmp_path, flat_colour_model
):
    from PIL import Image

    from conftest import CLASS_COLOURS
    from wastenet.analysis import power as pw
    from wastenet.runtime.app import BinOptions, run_bin

    scene = tmp_path / "scene"
    scene.mkdir()
    for name in ("glass", "metal"):
        Image.new("RGB", (64, 48), CLASS_COLOURS[name]).save(scene / f"{name}.png")
    run_dir = tmp_path / "run"
    wall0 = time.time()
    opts = BinOptions(source=f"{scene}?fps=20&hold=10&size=48x64", model=str(flat_colour_model),
                      gate=False, headless=True, run_dir=str(run_dir))  # fmt: skip
    summary = run_bin(opts, lambda line: None)
    wall1 = time.time()
    record = json.loads((run_dir / "run.json").read_text())
    assert read_clock(run_dir) == record["clock"]
    assert wall0 <= record["clock"]["epoch_s"] <= record["clock_end"]["epoch_s"] <= wall1
    frames = [json.loads(line) for line in (run_dir / "timings.jsonl").read_text().splitlines()]
    on_the_wall = [f["t"] + record["clock"]["offset_s"] for f in frames]
    assert wall0 <= min(on_the_wall) and max(on_the_wall) <= wall1
    # a power log stamped by the wall clock (every 50 ms) lines up without --clock-offset
    stamps = [wall0 - 1 + 0.05 * i for i in range(int((wall1 - wall0 + 2) / 0.05))]
    log = pw.parse_lines([f"{pw.format_stamp(t)} POM_5V_IN 3000/3000" for t in stamps])
    aligned = pw.align_run(log, run_dir)
    assert aligned["anchor"].startswith("run.json clock") and aligned["frames"] == summary.frames
    assert aligned["start"] == pytest.approx(min(on_the_wall), abs=1e-5)
    assert aligned["all"]["samples"] >= 0.8 * (max(on_the_wall) - min(on_the_wall)) / 0.05
