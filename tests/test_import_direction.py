"""The deploy side never reaches into the build side.

A Jetson or a Raspberry Pi runs the bin after ``pip install -e .`` (numpy, OpenCV,
Pillow, PyYAML, onnxruntime); torch, timm, matplotlib and the rest of the ``train``
extra live on the machine that trains. Two checks keep it so:

- statically (ast): every import of every deploy module, function-level lazy ones
  included, names neither a build module nor torch/timm/torchvision, and any other
  train-extra package (matplotlib, onnx, tqdm, ...) only under ``try/except
  ImportError`` (optional: figures are skipped without matplotlib);
- at run time: a Python whose import system refuses every train-extra package
  imports every deploy module, runs the bin on the bundled model and samples, and
  runs ``wastenet bench`` and ``wastenet evaluate`` on the bundled ONNX model.

The lists below are the one statement of which module is on which side.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "wastenet"

# The build side: modules that need the train extra or run the torch path. Every other
# module of src/wastenet is the deploy side, so a new module is checked unless it is
# listed here.
BUILD = (
    "wastenet.data.*",  # except DEPLOY_READERS
    "wastenet.models",
    "wastenet.models.*",
    "wastenet.train",
    "wastenet.train.*",
    "wastenet.accelerate.export",
    "wastenet.accelerate.onnx_export",
    "wastenet.accelerate.quantize",
    "wastenet.accelerate.calibration",
    "wastenet.accelerate.openvino_export",
    "wastenet.accelerate.tensorrt",  # building engines; running them is backends.tensorrt_backend
    "wastenet.accelerate.backends.torch_backend",  # .safetensors bundles run in torch
    "wastenet.evaluate.shift",  # trains one model per held-out source
    "wastenet.evaluate.shift_commands",
    "wastenet.evaluate.shift_plan",  # the folds of that run
    "wastenet.runtime.testing",  # test helper: writes ONNX graphs with the onnx package
)
# The data stage's readers: `wastenet evaluate` reads a manifest and may use the
# decoded-image cache (stdlib, numpy, imageio, preprocess; no imagehash, no torch).
DEPLOY_READERS = ("wastenet.data.manifest", "wastenet.data.cache")
# Build-side subcommand handlers inside deploy command modules: not walked.
BUILD_HANDLERS = {
    "wastenet.accelerate.commands": ("cmd_export",),
}
NEVER = frozenset({"torch", "torchvision", "timm"})  # not even behind try/except ImportError

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
TRIES = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def is_build(module: str) -> bool:
    if module in DEPLOY_READERS:
        return False
    return any(fnmatch.fnmatchcase(module, pattern) for pattern in BUILD)


DEPLOY = sorted(m for m in MODULES if not is_build(m))


def train_extra() -> frozenset[str]:
    """Import names of pyproject's ``train`` extra (dist name, lower case, ``-`` -> ``_``)."""
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^train = \[(.*?)^\]", text, re.S | re.M)
    assert block, "pyproject.toml has no train extra"
    specs = re.findall(r'"([^"]+)"', block.group(1))
    return frozenset(
        re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower().replace("-", "_") for s in specs
    )


TRAIN_EXTRA = train_extra()


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted name
    line: int
    lazy: bool  # inside a function: runs when called, not at import
    guarded: bool  # inside ``try:`` with an ``except ImportError`` (or ModuleNotFoundError)


def _catches_import_error(node: ast.AST) -> bool:
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if any(
            isinstance(k, ast.Name) and k.id in ("ImportError", "ModuleNotFoundError")
            for k in kinds
        ):
            return True
    return False


def _is_import_call(node: ast.AST) -> bool:
    """``importlib.import_module("literal")`` or ``import_module("literal")``."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in ("import_module", "__import__") and isinstance(node.args[0].value, str)


def _targets(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the importing module's package
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        return list(dict.fromkeys(names))
    if _is_import_call(node):
        return [node.args[0].value]
    return []


def imports_in(
    source: str, module: str, is_package: bool = False, skip: Iterable[str] = ()
) -> list[Import]:
    """Every import in ``source`` (module level, in functions, under try), except in the
    top-level functions named in ``skip``."""
    tree = ast.parse(source)
    found: list[Import] = []

    def visit(node: ast.AST, lazy: bool, guarded: bool) -> None:
        for target in _targets(node, module, is_package):
            found.append(Import(target, node.lineno, lazy, guarded))
        if isinstance(node, TRIES):
            inner = guarded or _catches_import_error(node)
            for stmt in node.body:
                visit(stmt, lazy, inner)
            for part in (*node.handlers, *node.orelse, *node.finalbody):
                visit(part, lazy, guarded)
            return
        lazy = lazy or isinstance(node, FUNCTIONS)
        for child in ast.iter_child_nodes(node):
            visit(child, lazy, guarded)

    for stmt in tree.body:
        if not (isinstance(stmt, FUNCTIONS) and stmt.name in set(skip)):
            visit(stmt, False, False)
    return found


def imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    skip = BUILD_HANDLERS.get(module, ())
    return imports_in(path.read_text(), module, path.name == "__init__.py", skip)


def problem(imp: Import) -> str | None:
    """Why a deploy module may not make this import, or None when it may."""
    parts = imp.target.split(".")
    if parts[0] == "wastenet":
        for i in range(2, len(parts) + 1):  # the package __init__s run too
            name = ".".join(parts[:i])
            if name in MODULES and is_build(name):
                return f"imports the build module {name}"
        return None
    if parts[0] in NEVER:
        return f"imports {parts[0]}"
    if parts[0] in TRAIN_EXTRA and not imp.guarded:
        return f"imports {parts[0]} (train extra) outside try/except ImportError"
    return None


def _report(module: str, imports: Iterable[Import]) -> list[str]:
    return [f"{module}:{imp.line}: {why}" for imp in imports if (why := problem(imp))]


# --- the lists ------------------------------------------------------------------------


def test_the_lists_name_real_modules():
    for pattern in BUILD:
        assert any(fnmatch.fnmatchcase(m, pattern) for m in MODULES), f"{pattern}: no such module"
    for name in DEPLOY_READERS:
        assert name in MODULES, name
    for module, handlers in BUILD_HANDLERS.items():
        tree = ast.parse(MODULES[module].read_text())
        defined = {s.name for s in tree.body if isinstance(s, FUNCTIONS)}
        assert set(handlers) <= defined, f"{module} has no {set(handlers) - defined}"
    assert {"torch", "timm", "torchvision", "matplotlib", "imagehash"} <= TRAIN_EXTRA
    must_deploy = [
        "wastenet.cli", "wastenet.meta", "wastenet.classes", "wastenet.preprocess",
        "wastenet.imageio", "wastenet.errors", "wastenet.config", "wastenet.plotting",
        "wastenet.runtime.app", "wastenet.runtime.loop", "wastenet.accelerate.engine",
        "wastenet.accelerate.bench", "wastenet.accelerate.backends.onnx_backend",
        "wastenet.accelerate.backends.tensorrt_backend", "wastenet.evaluate.commands",
        "wastenet.evaluate.report", "wastenet.evaluate.temperature", "wastenet.data.manifest",
    ]  # fmt: skip
    assert set(must_deploy) <= set(DEPLOY), set(must_deploy) - set(DEPLOY)


def test_the_checker_sees_lazy_guarded_relative_and_dynamic_imports():
    source = (
        "import numpy\n"
        "def f():\n"
        "    import torch\n"
        "    from wastenet.models import load_bundle\n"
        "    from wastenet.data import manifest\n"
        "    from ..train import loop\n"
        "    try:\n"
        "        import matplotlib.pyplot\n"
        "    except (OSError, ImportError):\n"
        "        pass\n"
        "    import tqdm\n"
        "def cmd_export():\n"
        "    from wastenet.accelerate.export import export_bundle\n"
        "importlib.import_module('wastenet.accelerate.quantize')\n"
    )
    found = imports_in(source, "wastenet.runtime.example", skip=("cmd_export",))
    why = {imp.target: problem(imp) for imp in found}
    assert set(why) == {
        "numpy", "torch", "wastenet.models", "wastenet.data.manifest", "wastenet.train.loop",
        "matplotlib.pyplot", "tqdm", "wastenet.accelerate.quantize",
    }  # fmt: skip
    for ok in ("numpy", "wastenet.data.manifest", "matplotlib.pyplot"):
        assert why[ok] is None, ok
    for bad in ("torch", "wastenet.models", "wastenet.train.loop", "tqdm"):
        assert why[bad], bad
    assert (
        why["wastenet.accelerate.quantize"]
        == "imports the build module wastenet.accelerate.quantize"
    )
    assert next(i for i in found if i.target == "torch").lazy
    guarded = Import("torch", 1, lazy=True, guarded=True)
    assert problem(guarded) == "imports torch"  # never, try/except or not


# --- static ---------------------------------------------------------------------------


def test_deploy_modules_import_nothing_of_the_build_side():
    bad = [line for module in DEPLOY for line in _report(module, imports_of(module))]
    assert not bad, "deploy modules reaching into the build side:\n" + "\n".join(bad)


def test_every_command_module_is_light_at_import():
    """``wastenet`` imports every module of cli.COMMAND_MODULES to build its parser, so
    even a build stage's command module may import only deploy-side things at module
    level (its handlers import the rest when the command runs)."""
    from wastenet.cli import COMMAND_MODULES

    bad = []
    for module in COMMAND_MODULES:
        bad += _report(module, (i for i in imports_of(module) if not i.lazy))
    assert not bad, "\n".join(bad)


# --- figures are optional -------------------------------------------------------------


def test_figures_are_skipped_with_one_note_without_matplotlib(monkeypatch, capsys, tmp_path):
    import wastenet.plotting as plotting
    from wastenet.accelerate.bench import write_results
    from wastenet.evaluate.plots import save_confusion_png
    from wastenet.evaluate.realworld import evaluate_realworld

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(plotting, "_noted", False)
    assert plotting.pyplot() is None
    confusion = {"counts": [[1]], "normalized": [[1.0]], "rows": ["a"], "columns": ["a"]}
    assert save_confusion_png(confusion, tmp_path / "c.png", "t") is None
    row = dict(format="onnx", artifact="m.onnx", size_mb=1.0, load_s=0.1, p50_ms=2.0,
               p95_ms=2.0, p99_ms=2.0, ips_p50=500.0, ips_measured=480.0, peak_rss_mb=90.0,
               cpu_load=1.0)  # fmt: skip
    paths = write_results([row], tmp_path / "bench")
    assert paths["png"] is None and paths["json"].is_file() and paths["md"].is_file()
    csv = tmp_path / "rw.csv"
    csv.write_text("item,true,predicted,error\ncan,metal,metal,\njar,glass,plastic,glare\n")
    evaluate_realworld(csv, tmp_path / "rw")
    assert sorted(p.name for p in (tmp_path / "rw").iterdir()) == ["realworld.json", "realworld.md"]
    assert not list(tmp_path.rglob("*.png"))
    assert capsys.readouterr().err.count(plotting.NOTE) == 1


# --- run time: the deploy install, simulated ------------------------------------------

BLOCKER = """\
import sys

BLOCKED = frozenset({blocked!r})
ATTEMPTS = []


class TrainExtraIsNotInstalled:
    \"\"\"The deploy install: every package of the train extra fails to import.\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            ATTEMPTS.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (deploy install)", name=name)
        return None


sys.meta_path.insert(0, TrainExtraIsNotInstalled())
"""

SCRIPT = """\
import importlib, json, sys
import sitecustomize
from wastenet.cli import main

modules, model, manifest, out = json.loads(sys.argv[1])
for name in modules:
    importlib.import_module(name)
codes = [
    main(["run", "--headless", "--max-frames", "30", "--run-dir", out + "/run"]),
    main(["bench", model, "--threads", "1", "--warmup", "1", "--iters", "3", "--out", out + "/bench"]),
    main(["evaluate", model, "--manifest", manifest, "--no-robustness", "--out", out + "/eval"]),
]
print(json.dumps({"codes": codes, "attempts": sitecustomize.ATTEMPTS}))
"""


def _samples_manifest(path: Path) -> Path:
    """The bundled samples (``<class>_<n>.jpg``) as a test split."""
    from wastenet.data.manifest import Item, Manifest
    from wastenet.meta import file_sha256

    samples = sorted((SRC / "assets" / "samples").glob("*.jpg"))
    items = [
        Item(str(p), "samples", (p.stem.rsplit("_", 1)[0],), file_sha256(p), "test")
        for p in samples
    ]
    return Manifest(items).save(path)


@pytest.mark.slow
def test_the_deploy_side_runs_without_the_train_extra(tmp_path):
    """Import every deploy module, run the bin, bench and evaluate in a Python that
    cannot import torch, timm, matplotlib or anything else of the train extra (the
    blocker is a sitecustomize on PYTHONPATH, so bench's worker process has it too)."""
    from wastenet.plotting import NOTE

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER.format(blocked=sorted(TRAIN_EXTRA)))
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    model = SRC / "assets" / "model" / "wastenet-lite0.onnx"
    manifest = _samples_manifest(tmp_path / "manifest.json")
    out = tmp_path / "out"
    args = json.dumps([DEPLOY, str(model), str(manifest), str(out)])
    cmd = [sys.executable, "-c", SCRIPT, args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["codes"] == [0, 0, 0], proc.stderr[-3000:]
    assert not {a.partition(".")[0] for a in result["attempts"]} & NEVER, result["attempts"]
    assert (out / "run" / "timings.jsonl").is_file()
    assert sorted(p.name for p in (out / "bench").iterdir()) == ["bench.json", "bench.md"]
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["report.json", "report.md"]
    report = json.loads((out / "eval" / "report.json").read_text())
    assert report["data"]["n_items"] == 10 and report["overall"]["n"] == 10
    assert proc.stderr.count(NOTE) == 1  # the figures are skipped, once said
