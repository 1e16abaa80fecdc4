"""What ``--help`` shows is real: every example parses with the real parser, and every
preset and ``--flag`` it names exists."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from wastenet.cli import build_parser, main

# A preset's shape (lite0_mixed_75, densenet169_benchmark, lite0_mixed_75_stage2), not
# inside a path or a file name (runs/shift/lite0_50, model_75.onnx).
PRESET_LIKE = re.compile(
    r"(?<![\w./=-])[a-z][a-z0-9]*(?:_[a-z0-9]+)*_(?:\d{2,3}|benchmark)(?:_stage\d+)?(?![\w./-])"
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def all_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """``(command, parser)`` for the top parser and every subcommand under it."""
    found, todo, seen = [], [("wastenet", build_parser())], set()
    while todo:
        name, parser = todo.pop(0)
        if id(parser) in seen:  # an alias
            continue
        seen.add(id(parser))
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return found


def is_example(line: str) -> bool:
    return line.strip().startswith("wastenet ") or " -m wastenet.cli " in line


def example_argvs(epilog: str) -> list[tuple[str, list[str]]]:
    """``(line, argv)`` for each ``wastenet ...`` (or ``-m wastenet.cli ...``) line of an
    epilog, continuation lines joined; the argv is what follows the program name."""
    out = []
    for line in filter(is_example, epilog.replace("\\\n", " ").splitlines()):
        words = shlex.split(line, comments=True)
        start = words.index("wastenet.cli" if " -m wastenet.cli " in line else "wastenet")
        out.append((line.strip(), words[start + 1 :]))
    return out


def help_prose(parser: argparse.ArgumentParser) -> list[str]:
    """Description, epilog less its examples (parsed instead), and each option's help."""
    epilog = (parser.epilog or "").replace("\\\n", " ").splitlines()
    texts = [parser.description or "", "\n".join(x for x in epilog if not is_example(x))]
    return texts + [a.help or "" for a in parser._actions if a.help != argparse.SUPPRESS]


@pytest.fixture(scope="module")
def presets() -> set[str]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["train", "--list"]) == 0
    names = set(buf.getvalue().split())
    assert "lite0_mixed_75" in names
    return names


def test_example_lines_are_found():
    """The scan itself: a continued torchrun line, a comment, quotes."""
    epilog = (
        "examples:\n  wastenet a --b 'c d'  # note\n  torchrun -m wastenet.cli train x \\\n"
        "    --out y\n  not wastenet here\n"
    )
    assert example_argvs(epilog) == [
        ("wastenet a --b 'c d'  # note", ["a", "--b", "c d"]),
        ("torchrun -m wastenet.cli train x      --out y", ["train", "x", "--out", "y"]),
    ]


def test_every_help_example_parses_and_names_real_presets(presets, capsys):
    """parse_args on each example's argv (nothing runs); a preset it trains must exist."""
    parsed = 0
    for command, parser in all_parsers():
        for line, argv in example_argvs(parser.epilog or ""):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit:
                pytest.fail(f"{command} --help: {line!r} does not parse: {capsys.readouterr().err}")
            assert getattr(args, "func", None), f"{command} --help: {line!r} runs nothing"
            named = [getattr(args, "config", None), *(getattr(args, "recipes", None) or [])]
            for name in filter(None, named):
                assert name.endswith((".yaml", ".yml")) or name in presets, (
                    f"{command} --help: {line!r} names no preset: {name}"
                )
            parsed += 1
    assert parsed >= 30  # every stage's examples were read


def test_help_names_only_real_presets_and_flags(presets):
    parsers = all_parsers()
    flags = {s for _, p in parsers for a in p._actions for s in a.option_strings}
    for command, parser in parsers:
        for text in help_prose(parser):
            for name in PRESET_LIKE.findall(text):
                assert name in presets, f"{command} --help names no preset: {name}"
            for flag in FLAG.findall(text):
                assert flag in flags, f"{command} --help names no flag: {flag}"


def test_the_checks_catch_what_the_help_once_said(presets):
    """The defects this file guards against: a preset and a flag that never existed."""
    assert PRESET_LIKE.findall("train b0_mixed_75 --out runs/lite0_50") == ["b0_mixed_75"]
    assert "b0_mixed_75" not in presets
    flags = {s for _, p in all_parsers() for a in p._actions for s in a.option_strings}
    assert FLAG.findall("(or use --no-pretrained)") == ["--no-pretrained"]
    assert "--no-pretrained" not in flags


def test_a_refused_file_is_one_line_not_a_traceback(tmp_path, capsys):
    """An --out the system cannot make (here under a file) ends with exit code 2 and
    one line that names it, whichever command met it."""
    (tmp_path / "afile").write_text("")
    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / "afile" / "report"
    rc = main(["report", "--no-defaults", "--results", str(results), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    assert err.strip().splitlines() == [f"wastenet: error: {out / 'figures'}: Not a directory"]
