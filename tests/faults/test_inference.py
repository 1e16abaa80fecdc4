"""Inference under faults: the real ONNX engine wrapped so that it raises mid-run, or hangs
(a hung GPU driver) with or without a SIGTERM on top.

Invariants: the doors close (at once on an error, on the timer while hung); run.json says
what happened; committed samples survive; the process ends with a documented code: 1
(an unexpected error, with its traceback) for a raising engine, 4 (stuck) for a hung one,
whether the watchdog notices on its own or the stop a signal asked for never comes.
"""

from __future__ import annotations

import signal
import time

import pytest

import wastenet.accelerate
from faults.conftest import HOLD_S, start_bin, write_scene
from faults.invariants import (
    check_doors,
    check_store,
    committed,
    plant_user_files,
    read_moves,
    run_record,
    wait_until,
)
from faults.parts import FaultyEngine, ServoPlan, servokit_factory
from wastenet.cli import main
from wastenet.errors import ExitCode
from wastenet.runtime import actuators


def test_an_engine_that_raises_closes_the_doors_and_records_why(
    model, tmp_path, doors, monkeypatch
):
    path, _ = model
    real_load, engines = wastenet.accelerate.load_engine, []
    monkeypatch.setattr(
        wastenet.accelerate,
        "load_engine",
        lambda p, **kw: engines.append(FaultyEngine(real_load(p), raise_at=30)) or engines[-1],
    )
    doors.write_text(doors.read_text().replace(f"hold_s: {HOLD_S}", "hold_s: 5"))
    plan = ServoPlan()
    monkeypatch.setattr(actuators, "_servokit_factory", servokit_factory(plan))
    scene = write_scene(tmp_path / "scene", ["glass"])
    store, run_dir = tmp_path / "store", tmp_path / "run"
    planted = plant_user_files(store)
    args = ["run", "--model", str(path), "--source", f"{scene}?hold=200&size=48x64",
            "--doors", str(doors), "--actuator", "pca9685://", "--vote", "3",
            "--threshold", "0.5", "--no-gate", "--headless", "--run-dir", str(run_dir),
            "--store", str(store), "--store-policy", "all"]  # fmt: skip
    with pytest.raises(RuntimeError, match="device lost"):  # uncaught: Python exits with 1
        main(args)
    record = run_record(run_dir)
    assert (record["status"], record["exit_code"]) == ("failed", ExitCode.FAILED)
    assert "RuntimeError" in record["error"] and record["summary"]["frames"] == 29
    intervals = check_doors(plan.moves, 5)
    assert [ch for ch, _, _ in intervals] == [1]  # glass opened door 1 ...
    closed_t = intervals[0][2]
    assert 0 < closed_t - engines[0].raised_t < 1.0  # ... and the error closed it at once
    rows = check_store(store, committed(store), planted)
    assert len(rows) == 29  # one sample per frame inferred before the error


@pytest.mark.parametrize("how", ["watchdog", "sigterm"])
def test_a_hung_engine_ends_the_bin_with_exit_4(model, tmp_path, doors, how):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass"])
    store, run_dir, hung = tmp_path / "store", tmp_path / "run", tmp_path / "hung"
    moves_log = tmp_path / "servo.jsonl"
    planted = plant_user_files(store)
    faults = {
        "engine": {"hang_at": 6, "marker": str(hung)},
        "servo": {"log": str(moves_log)},
        "grace_s": 1.0,
    }
    stuck_s = 1.5 if how == "watchdog" else 30
    proc = start_bin(
        faults, "--model", path, "--source", f"{scene}?hold=500&size=48x64&fps=20",
        "--doors", doors, "--actuator", "pca9685://", "--vote", "3", "--threshold", "0.5",
        "--no-gate", "--headless", "--run-dir", run_dir, "--store", store,
        "--store-policy", "all", "--stuck-s", stuck_s,
    )  # fmt: skip
    try:
        assert wait_until(hung.exists, 30), "the engine never hung"
        t_hung = time.monotonic()
        before = committed(store)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)  # the stop a supervisor asks for, never seen
        out, err = proc.communicate(timeout=30)
        ended_in = time.monotonic() - t_hung
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.STUCK == 4, err
    reason = "no progress for" if how == "watchdog" else "did not stop within 1 s of SIGINT"
    assert "stuck:" in err and reason in err and "in inference" in err, err
    assert "doors closed" in err and "Traceback" not in err
    assert ended_in < (stuck_s if how == "watchdog" else 1.0) + 2.5
    record = run_record(run_dir)
    assert (record["status"], record["exit_code"]) == ("stuck", ExitCode.STUCK)
    assert record["summary"]["frames"] == 5
    intervals = check_doors(read_moves(moves_log), HOLD_S)  # closed on the timer while hung
    assert [ch for ch, _, _ in intervals] == [1]
    check_store(store, before, planted)
