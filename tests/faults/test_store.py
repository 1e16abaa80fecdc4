"""The sample store under faults, with the whole bin around it: SIGKILL halfway through a
JPEG, a second bin on the same store, a real full disk (a tiny tmpfs) and a real read-only
folder (a read-only bind mount), the last two in a private mount namespace.

Invariants: every sample committed before the fault is there, whole, when the real store
is reopened; no file the store did not write is touched; a refused store stops the run
before anything moves (exit 2); a full or read-only disk drops samples and timing lines
but never the run (exit 0); a killed run's open door closes when the bin starts again.
"""

from __future__ import annotations

import shlex
import signal
import sys

import cv2
import numpy as np

from faults.conftest import BINPROC, HOLD_S, bin_command, run_bin_process, start_bin, write_scene
from faults.invariants import (
    check_doors,
    check_store,
    committed,
    door_intervals,
    plant_user_files,
    read_moves,
    wait_until,
)
from faults.parts import CLOSED_ANGLE, ServoPlan, servokit_factory
from wastenet.cli import main
from wastenet.errors import ExitCode
from wastenet.runtime import actuators
from wastenet.runtime.store import SampleStore


def bin_args(model, scene, doors, store, run_dir, source_query="hold=200&size=48x64"):
    return [
        "--model", model, "--source", f"{scene}?{source_query}", "--doors", doors,
        "--actuator", "pca9685://", "--vote", "3", "--threshold", "0.5", "--no-gate",
        "--headless", "--run-dir", run_dir, "--store", store, "--store-policy", "all",
    ]  # fmt: skip


def tree(root) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_sigkill_mid_write_loses_no_committed_sample_and_the_next_start_closes_the_door(
    model, tmp_path, doors
):
    path, _ = model
    doors.write_text(doors.read_text().replace(f"hold_s: {HOLD_S}", "hold_s: 30"))
    scene = write_scene(tmp_path / "scene", ["glass"])
    store, moves_log = tmp_path / "store", tmp_path / "servo.jsonl"
    planted = plant_user_files(store)
    args = bin_args(path, scene, doors, store, tmp_path / "run1")
    first = run_bin_process({"servo": {"log": str(moves_log)}, "kill_at_sample": 8}, *args)
    assert first.returncode == -signal.SIGKILL, first.stderr
    before = committed(store)
    assert [row_id for row_id, _, _ in before] == list(range(1, 8))  # the 8th was mid-write
    assert [p.name for p in (store / "images").glob("*.tmp")]  # its half JPEG is on disk
    _, still_open = door_intervals(read_moves(moves_log))
    assert list(still_open) == [1]  # glass's door, open when the process died

    args = bin_args(path, scene, doors, store, tmp_path / "run2") + ["--max-frames", "2"]
    second = run_bin_process({"servo": {"log": str(moves_log)}}, *args)
    assert second.returncode == ExitCode.OK, second.stderr
    moves = read_moves(moves_log)
    restart = next(i for i, m in enumerate(moves) if i > 0 and m["n"] == 1)
    assert [(m["channel"], m["angle"]) for m in moves[restart : restart + 3]] == [
        (door, CLOSED_ANGLE) for door in (0, 1, 2)
    ]  # the second run closed every door before its first frame
    check_doors(moves[restart:], 30)
    rows = check_store(store, before, planted)
    assert len(rows) == len(before) + 2


def test_a_second_bin_on_the_same_store_is_refused_and_touches_nothing(
    model, tmp_path, doors, monkeypatch, capsys
):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass", "metal"])
    store, moves_log, ready = tmp_path / "store", tmp_path / "servo.jsonl", tmp_path / "ready"
    planted = plant_user_files(store)
    query = "loop=0&fps=30&hold=20&gap=10&size=48x64&background=%231e1e1e"
    args = bin_args(path, scene, doors, store, tmp_path / "run1", query)
    first = start_bin({"servo": {"log": str(moves_log)}, "ready": str(ready)}, *args)
    try:
        assert wait_until(lambda: len(committed(store)) >= 3, 30), "the first bin stored nothing"
        plan = ServoPlan()
        monkeypatch.setattr(actuators, "_servokit_factory", servokit_factory(plan))
        second_dir = tmp_path / "run2"
        code = main(["run", *map(str, bin_args(path, scene, doors, store, second_dir, query))])
        err = capsys.readouterr().err
        assert code == ExitCode.BAD_INPUT and "in use by another process" in err
        assert plan.writes == 0  # refused before any servo moved
        before = committed(store)
        assert wait_until(lambda: len(committed(store)) > len(before) + 3, 30)  # it went on
        assert first.poll() is None
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == ExitCode.OK, err
    check_doors(read_moves(moves_log), HOLD_S)
    assert check_store(store, before, planted)


def test_a_full_disk_drops_samples_and_timing_lines_but_never_the_run(
    model, tmp_path, doors, namespace
):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass"])
    disk, after, plant = tmp_path / "disk", tmp_path / "after", tmp_path / "plant"
    disk.mkdir()
    after.mkdir()
    planted = plant_user_files(plant / "store")
    args = bin_args(path, scene, doors, disk / "store", disk / "run", "hold=400&size=48x64")
    command = bin_command({"servo": {"log": str(tmp_path / "servo.jsonl")}}, *args)
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {disk} && cp -a {plant}/. {disk}/ && "
        f"{shlex.join(command)}; rc=$?; cp -a {disk}/. {after}/; exit $rc"
    )
    result = namespace(script)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "400 frames (400 inferred)" in result.stdout and "Traceback" not in result.stderr
    store_lines = [line for line in result.stderr.splitlines() if "cannot save a sample" in line]
    assert len(store_lines) == 1 and "full" in store_lines[0]
    assert any("timings.jsonl: cannot write" in line for line in result.stderr.splitlines())
    rows = check_store(after / "store", committed(after / "store"), {
        after / p.relative_to(plant): data for p, data in planted.items()
    })  # fmt: skip
    assert 0 < len(rows) < 400  # some kept, the rest dropped
    check_doors(read_moves(tmp_path / "servo.jsonl"), HOLD_S)


def test_a_read_only_store_is_refused_before_anything_moves(model, tmp_path, doors, namespace):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass"])
    store, moves_log, run_dir = tmp_path / "store", tmp_path / "servo.jsonl", tmp_path / "run"
    kept = SampleStore(store)
    for i in range(3):
        kept.offer(np.full((48, 64, 3), 40 * i, np.uint8), "glass", np.eye(5)[1], "glass", i)
    kept.close()
    plant_user_files(store)
    snapshot = tree(store)
    command = bin_command(
        {"servo": {"log": str(moves_log)}}, *bin_args(path, scene, doors, store, run_dir)
    )
    script = (
        f"mount --bind {store} {store} && mount -o remount,bind,ro {store} && {shlex.join(command)}"
    )
    result = namespace(script)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert "cannot open the sample store" in result.stderr
    assert "Read-only file system" in result.stderr and "Traceback" not in result.stderr
    assert tree(store) == snapshot  # not one byte changed
    assert read_moves(moves_log) == []  # and no servo moved


def test_images_turning_read_only_mid_run_drop_samples_not_the_run(
    model, tmp_path, doors, namespace
):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass"])
    store, moves_log = tmp_path / "store", tmp_path / "servo.jsonl"
    planted = plant_user_files(store)
    faults = {"servo": {"log": str(moves_log)}, "ro_images_after": 5}
    command = bin_command(faults, *bin_args(path, scene, doors, store, tmp_path / "run"))
    result = namespace(shlex.join(command) + " --max-frames 60")
    assert result.returncode == ExitCode.OK, result.stderr
    assert "60 frames (60 inferred)" in result.stdout and "Traceback" not in result.stderr
    store_lines = [line for line in result.stderr.splitlines() if "cannot save a sample" in line]
    assert len(store_lines) == 1 and "Read-only file system" in store_lines[0]
    rows = check_store(store, committed(store), planted)
    assert len(rows) == 5
    check_doors(read_moves(moves_log), HOLD_S)
    assert cv2.imread(str(store / "images" / rows[-1]["image_path"])) is not None
    assert BINPROC.exists() and sys.executable
