"""Timing files of a run: rotation at a size limit keeps the disk bounded and loses no line."""

from __future__ import annotations

import json

import pytest

from wastenet.runtime.timings import RotatingFile, TimingsWriter


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
