"""Actuation under faults: the real PCA9685 driver over simulated servo hardware whose I2C
writes fail now and then, always, slowly, or never return.

Invariants: no door open longer than hold_s + 1 s, checked on the angles that reached the
hardware; every door closed at the end; the bin sorts on through driver faults (logged
once per burst) and a driver that never returns ends it with exit code 4.
"""

from __future__ import annotations

import logging

import pytest

from faults.conftest import HOLD_S, start_bin, write_scene
from faults.invariants import check_doors, live_threads, read_moves, run_record, wait_until
from faults.parts import CLOSED_ANGLE, OPEN_ANGLE, ServoPlan, servokit_factory
from wastenet.errors import ExitCode
from wastenet.runtime import actuators
from wastenet.runtime.actuators import open_actuator
from wastenet.runtime.app import BinOptions, run_bin
from wastenet.runtime.doors import load_door_map

HOME = 3  # the first three writes close the three doors at start


def run_glass(tmp_path, engine, doors, plan, monkeypatch, seconds=1.0, fps=40):
    """The bin on one glass item in view for ``seconds`` (paced), over ``plan``'s hardware."""
    monkeypatch.setattr(actuators, "_servokit_factory", servokit_factory(plan))
    scene = write_scene(tmp_path / "scene", ["glass"])
    lines: list[str] = []
    opts = BinOptions(
        source=f"{scene}?hold={int(seconds * fps)}&fps={fps}&size=48x64",
        actuator="pca9685://",
        doors=str(doors),
        vote=3,
        threshold=0.5,
        gate=False,
        headless=True,
        run_dir=str(tmp_path / "run"),
    )
    summary = run_bin(opts, lines.append, engine=engine)
    return summary, lines


def test_door_timer_closes_doors_without_frames():
    doors = load_door_map()
    actuator = open_actuator("sim://?delay=0", doors)
    assert actuator.start_timer() and not actuator.start_timer()  # once
    actuator.open_door(0, hold_s=0.2)
    assert wait_until(lambda: actuator.open_doors() == [], 1.0)  # no tick() called
    opened, closed = actuator.commands
    assert (opened.action, closed.action) == ("open", "close")
    assert 0.2 <= closed.t - opened.t < 0.2 + 0.3
    actuator.close()
    assert not live_threads("door-timer")


def test_a_refused_close_is_sent_again_until_the_door_closes(
    model, tmp_path, doors, monkeypatch, caplog
):
    _, engine = model
    plan = ServoPlan(fail=[HOME + 2, HOME + 3])  # the open goes through, two closes fail
    with caplog.at_level(logging.WARNING, logger="wastenet.runtime.actuators"):
        summary, lines = run_glass(tmp_path, engine, doors, plan, monkeypatch)
    assert [a.door for a in summary.actuations] == [1]
    [(channel, opened, closed)] = check_doors(plan.moves, HOLD_S)
    assert channel == 1 and closed - opened >= HOLD_S + 2 * actuators.CLOSE_RETRY_S - 0.05
    assert [m["n"] for m in plan.moves] == [1, 2, 3, 4, 7]  # the third close went through
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "Remote I/O error" in errors[0]  # one line per burst
    assert any("go through again after 2 faults" in r.getMessage() for r in caplog.records)


def test_a_dead_bus_is_logged_once_and_the_bin_sorts_on(
    model, tmp_path, doors, monkeypatch, caplog
):
    _, engine = model
    plan = ServoPlan(fail_all=True)
    with caplog.at_level(logging.WARNING, logger="wastenet.runtime.actuators"):
        summary, lines = run_glass(tmp_path, engine, doors, plan, monkeypatch, seconds=0.5)
    assert summary.frames >= 10 and plan.moves == []
    assert any("door 1 FAILED (driver fault)" in line for line in lines)
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[0].startswith("servo channel 0: [Errno 121] Remote I/O error")
    assert errors[1:] == ["doors [0, 1, 2] may be open: the servo driver refused every close"]
    assert plan.writes > HOME + 2  # closes were retried all along
    assert run_record(tmp_path / "run")["status"] == "done"


def test_a_slow_servo_never_holds_a_door_open_past_its_time(model, tmp_path, doors, monkeypatch):
    _, engine = model
    plan = ServoPlan(stall_s=0.15)  # every I2C write takes 150 ms
    summary, _ = run_glass(tmp_path, engine, doors, plan, monkeypatch, seconds=1.2)
    assert [a.door for a in summary.actuations] == [1]
    [(channel, _, _)] = check_doors(plan.moves, HOLD_S)  # within hold_s + 1 s all the same
    assert channel == 1


def test_a_servo_driver_that_never_returns_ends_the_bin_with_exit_4(model, tmp_path, doors):
    path, _ = model
    scene = write_scene(tmp_path / "scene", ["glass"])
    moves_log, run_dir = tmp_path / "servo.jsonl", tmp_path / "run"
    faults = {"servo": {"log": str(moves_log), "hang_at": HOME + 2}}  # the first close hangs
    proc = start_bin(
        faults, "--model", path, "--source", f"{scene}?hold=400&fps=40&size=48x64",
        "--doors", doors, "--actuator", "pca9685://", "--vote", "3", "--threshold", "0.5",
        "--no-gate", "--headless", "--run-dir", run_dir, "--stuck-s", "1",
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == ExitCode.STUCK, err
    assert "no progress for" in err and "in actuate" in err and "Traceback" not in err
    assert "doors NOT closed: the servo driver is stuck" in err
    assert run_record(run_dir)["status"] == "stuck"
    # the hardware never took the close: the door is open until the next start homes it
    angles = [(m["channel"], m["angle"]) for m in read_moves(moves_log)]
    assert angles == [(0, CLOSED_ANGLE), (1, CLOSED_ANGLE), (2, CLOSED_ANGLE), (1, OPEN_ANGLE)]


@pytest.fixture(autouse=True)
def _no_timer_left():
    yield
    assert wait_until(lambda: not live_threads("door-timer"), 2.0)
