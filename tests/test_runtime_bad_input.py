"""Bad input to ``wastenet run`` (numbers, run folder, source, actuator, door map) is one
clear error, exit status 2 and no traceback, before the bin starts; a class without a door
is a start-up warning and "no door for class X" at its decision, never a "driver fault"."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from conftest import CLASS_COLOURS as COLOURS
from wastenet.cli import main

DOORS_WITHOUT_METAL = """\
hold_s: 0
crop_to_object: false
doors: {0: {channel: 0}, 1: {channel: 1}}
classes: {cardboard: 0, paper: 0, glass: 1, plastic: 1}
"""


@pytest.fixture(scope="module")
def model(flat_colour_model):
    return flat_colour_model


def scene(root, *names):
    root.mkdir()
    for i, name in enumerate(names):
        Image.new("RGB", (64, 48), COLOURS[name]).save(root / f"{i}_{name}.png")
    return root


def run(capsys, *args, gate=False):
    code = main(["run", "--headless", *([] if gate else ["--no-gate"]), *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--mjpeg-port", "99999", "--mjpeg-port 99999: a TCP port is 1..65535"),
        ("--mjpeg-port", "0", "--mjpeg-port 0: a TCP port"),
        ("--store-quota-mb", "-1", "--store-quota-mb -1.0: must be a finite number of MB > 0"),
        ("--store-quota-mb", "0", "--store-quota-mb 0.0: must be"),
        ("--store-quota-mb", "inf", "--store-quota-mb inf: must be"),
        ("--gate-threshold", "nan", r"--gate-threshold nan: .* finite number in \(0, 1\)"),
        ("--gate-threshold", "1", "--gate-threshold 1.0: "),
        ("--gate-threshold", "0", "--gate-threshold 0.0: "),
        ("--vote", "0", "--vote 0: the vote window must be >= 1"),
        ("--threshold", "1.5", r"--threshold 1.5: must be a finite number in \[0, 1\]"),
        ("--threshold", "-0.1", "--threshold -0.1: "),
        ("--threshold", "nan", "--threshold nan: "),
        ("--min-share", "1", r"--min-share 1.0: must be a finite number in \[0, 1\)"),
        ("--max-frames", "-1", "--max-frames -1: must be >= 0"),
        ("--stuck-s", "0", "--stuck-s 0.0: must be a finite number of seconds > 0"),
        ("--stuck-s", "nan", "--stuck-s nan: must be"),
        ("--store-policy", "some", "sampling policy 'some'"),
    ],
)
def test_out_of_range_numbers_fail_before_anything_opens(tmp_path, capsys, flag, value, message):
    run_dir = tmp_path / "run"
    store = ["--store", str(tmp_path / "store")] if flag == "--store-policy" else []
    code, out, err = run(capsys, flag, value, *store, "--run-dir", str(run_dir))
    assert code == 2 and err.startswith("wastenet: error: ")
    assert re.search(message, err), err
    assert not run_dir.exists() and not (tmp_path / "store").exists()


def test_unusable_run_dir_fails_before_the_run(model, tmp_path, capsys):
    folder = scene(tmp_path / "scene", "glass")
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for run_dir, message in (
        (a_file, "is a file"),
        (a_file / "run", "cannot write there"),
    ):
        code, out, err = run(
            capsys, "--model", str(model), "--source", str(folder), "--run-dir", str(run_dir)
        )
        assert code == 2 and f"--run-dir {run_dir}: {message}" in err
        assert "frames" not in out  # the bin never started


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "{scene}?fps=abc"], "option fps='abc' must be a finite number"),
        (["--source", "{scene}?size=0x0"], "option size='0x0' must be HEIGHTxWIDTH"),
        (["--source", "file://"], "file://: no path"),
        (["--source", "csi://0?hold=3"], r"unknown option\(s\) hold"),
        (["--actuator", "sim://?clock=5"], r"sim://\?clock=5: unknown option\(s\) clock"),
        (["--actuator", "log://?x=1"], r"unknown option\(s\) x; it takes no options"),
        (["--actuator", "sim://?delay=-1"], "delay='-1' must be a finite number >= 0"),
        (["--doors", "hold_s: abc\n"], "hold_s must be a number of seconds >= 0, not 'abc'"),
        (["--doors", "hold_s: -5\n"], "hold_s must be a number of seconds >= 0, not -5"),
        (["--doors", "classes: {plastik: 0}\n"], r"class\(es\) 'plastik' are not labels"),
    ],
)
def test_bad_source_actuator_and_door_map_are_one_clear_error(
    model, tmp_path, capsys, args, message
):
    folder = scene(tmp_path / "scene", "glass")
    flag, value = args
    if flag == "--doors":  # a door map with the bad line, valid otherwise
        path = tmp_path / "doors.yaml"
        classes = "" if "classes" in value else "classes: {glass: 0}\n"
        path.write_text(value + "doors: {0: {channel: 0}}\n" + classes)
        value = str(path)
    source = [] if flag == "--source" else ["--source", str(folder)]
    value = value.format(scene=folder)
    code, out, err = run(
        capsys, "--model", str(model), *source, flag, value, "--run-dir", str(tmp_path / "run")
    )
    assert code == 2
    assert re.search(message, err), err


def test_garbled_video_exits_non_zero_saying_why(model, tmp_path, capsys):
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), COLOURS["glass"][::-1], np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    start = data.find(b"\xff\xd8")  # zero each JPEG frame's payload, keep the AVI header
    while start >= 0:
        data[start : start + 400] = bytes(len(data[start : start + 400]))
        start = data.find(b"\xff\xd8", start)
    path.write_bytes(bytes(data))
    code, out, err = run(
        capsys, "--model", str(model), "--source", str(path), "--run-dir", str(tmp_path / "run")
    )
    assert code == 2 and f"{path}: could not decode any frame" in err


def test_class_without_a_door_is_a_warning_once_and_no_door_at_its_decision(
    model, tmp_path, capsys
):
    folder = scene(tmp_path / "scene", "metal", "glass", "metal")
    doors = tmp_path / "doors.yaml"
    doors.write_text(DOORS_WITHOUT_METAL)
    source = f"{folder}?hold=8&size=48x64"
    code, out, err = run(
        capsys, "--model", str(model), "--doors", str(doors), "--source", source,
        "--vote", "5", "--threshold", "0.5", "--run-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert code == 0, err
    assert out.count("warning: no door for metal") == 1
    assert out.count("-> no door for class metal") == 2 and out.count("-> door 1 opened") == 1
    assert "driver fault" not in out and "FAILED" not in out


def test_crop_to_object_flag_and_door_map_key_still_work(model, tmp_path, capsys):
    folder = scene(tmp_path / "scene", "glass")
    doors = tmp_path / "doors.yaml"
    doors.write_text(DOORS_WITHOUT_METAL)  # crop_to_object: false, overridden by the flag
    run_dir = tmp_path / "run"
    code, out, err = run(
        capsys, "--model", str(model), "--doors", str(doors), "--crop-to-object",
        "--source", f"{folder}?hold=8&gap=4&background=%23101010", "--vote", "5",
        "--run-dir", str(run_dir), gate=True,
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((run_dir / "run.json").read_text())["config"]["crop_to_object"] is True
    assert out.count("-> door 1 opened") == 1
