"""Fixtures of the fault suite: the real colour model, short door holds, small scenes, the
bin in a subprocess (``binproc.py``) and a private mount namespace for real disk faults."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import CLASS_COLOURS
from wastenet.runtime import live

HERE = Path(__file__).resolve().parent
BINPROC = HERE / "binproc.py"
HOLD_S = 0.4  # door hold of the suite's door map: faults are judged against hold_s + 1 s


@pytest.fixture(scope="module")
def model(flat_colour_model):
    from wastenet.accelerate import load_engine

    return flat_colour_model, load_engine(flat_colour_model)


@pytest.fixture
def doors(tmp_path) -> Path:
    """The bundled three-door map with a short hold and no object crop."""
    path = tmp_path / "doors.yaml"
    rows = "\n".join(f"  {d}: {{channel: {d}, open_angle: 90, closed_angle: 0}}" for d in range(3))
    path.write_text(
        f"hold_s: {HOLD_S}\ncrop_to_object: false\ndoors:\n{rows}\n"
        "classes: {cardboard: 0, glass: 1, metal: 2, paper: 0, plastic: 2}\n"
    )
    return path


def write_scene(folder: Path, names, corrupt=()) -> Path:
    """One flat image per class name, in order; names in ``corrupt`` get bytes no decoder takes."""
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        target = folder / f"{i:02d}_{name}.png"
        if name in corrupt:
            target.write_bytes(b"\x89PNG\r\n\x1a\n this is not a picture")
        else:
            Image.new("RGB", (64, 48), CLASS_COLOURS[name]).save(target)
    return folder


@pytest.fixture
def fast_reconnect(monkeypatch):
    """Shorter waits than a bin's defaults, so a lost camera is given up on in seconds."""
    monkeypatch.setitem(live.LIVE, "open_timeout_s", 1.0)
    monkeypatch.setitem(live.LIVE, "stall_s", 1.0)
    monkeypatch.setitem(live.RECONNECT, "max_failures", 3)
    monkeypatch.setitem(live.RECONNECT, "backoff_s", 0.2)


def bin_command(faults: dict, *args: str) -> list[str]:
    """The command line of ``wastenet run ARGS`` with ``faults`` injected (binproc.py)."""
    return [sys.executable, str(BINPROC), json.dumps(faults), "run", *map(str, args)]


def start_bin(faults: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        bin_command(faults, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_bin_process(faults: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        bin_command(faults, *args), capture_output=True, text=True, timeout=timeout
    )


@functools.cache
def _namespace_problem() -> str | None:
    unshare = shutil.which("unshare")
    if unshare is None or sys.platform != "linux":
        return "needs Linux and util-linux's unshare"
    probe = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", "mount -t tmpfs t /mnt"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"no private mount namespace here ({probe.stderr.strip() or probe.returncode})"
    return None


@pytest.fixture
def namespace():
    """Runs a shell script in a private user and mount namespace, where it may mount a tiny
    tmpfs (a real full disk) or bind a folder read-only (a real EROFS), even unprivileged;
    the mounts vanish with it. Skips where the kernel does not allow user namespaces."""
    problem = _namespace_problem()
    if problem:
        pytest.skip(problem)

    def run(script: str, timeout: float = 90, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **{k: str(v) for k, v in env.items()}},
        )

    return run
