"""`wastenet data ...` through the real CLI entry point."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from conftest import make_image_folder
from wastenet.cli import build_parser, main


@pytest.mark.parametrize("action", ["split", "check", "cache", "preview", "backgrounds"])
def test_help_has_an_example(action, capsys):
    """The epilog's examples (not the usage line, which names the command too) run the
    action, and parse with the real parser."""
    with pytest.raises(SystemExit) as exc:
        main(["data", action, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    epilog = re.split(r"^examples?:$", out, flags=re.MULTILINE)
    assert len(epilog) == 2, f"no examples section in:\n{out}"
    examples = [
        shlex.split(x)[1:] for x in epilog[1].splitlines() if x.strip().startswith("wastenet ")
    ]
    assert examples and all(argv[:2] == ["data", action] for argv in examples), epilog[1]
    for argv in examples:
        assert build_parser().parse_args(argv).data_command == action  # exits 2 when it cannot


def test_bad_path_is_one_clear_error(tmp_path, capsys):
    code = main(["data", "split", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "no such folder" in err and "Traceback" not in err
    assert main(["data", "check", str(tmp_path / "nope.json")]) == 2
    assert "no such manifest" in capsys.readouterr().err


def test_split_check_cache_preview_end_to_end(tmp_path, capsys):
    root = make_image_folder(tmp_path / "src", per_class=5, size_wh=(48, 64))
    out = tmp_path / "out"
    assert main(["data", "split", str(root), "--out", str(out), "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "| src | glass |" in text
    for name in ("manifest.json", "validation.json", "validation.txt", "duplicates.json"):
        assert (out / name).is_file()
    assert main(["data", "check", str(out / "manifest.json")]) == 0
    (root / "glass" / "glass0.jpg").unlink()
    assert main(["data", "check", str(out)]) == 1
    assert "vanished" in capsys.readouterr().out
    assert main(["data", "split", str(root), "--out", str(out), "--workers", "1"]) == 0
    assert "vanished since the previous manifest" in capsys.readouterr().out
    cache_dir = tmp_path / "cache"
    args = ["data", "cache", str(out), "--size", "24x32", "--cache-dir", str(cache_dir)]
    assert main([*args, "--workers", "1"]) == 0
    assert len(list(cache_dir.glob("*.npy"))) == 1
    grid = tmp_path / "grid.png"
    assert (
        main(["data", "preview", str(out), "--out", str(grid), "--n", "4", "--size", "24x32"]) == 0
    )
    assert grid.stat().st_size > 0
    assert json.loads((out / "manifest.json").read_text())["seed"] == 0
