"""Where a result came from: the command, the date and the machine.

Every JSON result the project writes (``wastenet evaluate``, ``verify``, ``bench``, the
bin's run.json, ``power``, ``shift``, a training run's provenance.json and the scripts
in benchmarks/) carries ``"provenance": provenance()``, so ``wastenet report`` can put
the command, date and machine beside each number. Standard library only.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

from wastenet import __version__


def command_line(argv: list[str] | None = None) -> str:
    """The command as a user would type it: ``wastenet ...`` for the CLI (also when run
    as ``python -m wastenet.cli`` or under torchrun), ``python benchmarks/x.py ...`` for
    a script (relative to the working folder when it is inside it)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv or not argv[0]:
        return "unknown"
    if argv[0] == "-c":
        return "python -c ..."
    prog = Path(argv[0])
    if prog.name in ("wastenet", "wastenet.exe") or prog.parts[-2:] == ("wastenet", "cli.py"):
        head = ["wastenet"]
    elif prog.suffix == ".py":
        try:
            prog = prog.resolve().relative_to(Path.cwd().resolve())
        except (ValueError, OSError):
            prog = Path(prog.name)
        head = ["python", prog.as_posix()]
    else:
        head = [prog.name]
    return shlex.join(head + argv[1:])


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except OSError:
        return ""


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or ""


# The CPU features a timing depends on (ONNX Runtime and OpenVINO pick kernels by them;
# OpenVINO computes in bf16 where BF16 or AMX is present unless told otherwise).
SIMD_FEATURES = (
    ("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"),
    ("avx_vnni", "AVX-VNNI"), ("avx512_bf16", "BF16"), ("amx_tile", "AMX"),
    ("asimd", "NEON"), ("asimddp", "dot product"),
)  # fmt: skip


def cpu_flags(cpuinfo: str | None = None) -> set[str] | None:
    """The CPU's feature flags from /proc/cpuinfo text (this machine's when None); None
    where that is unknown."""
    text = _read("/proc/cpuinfo") if cpuinfo is None else cpuinfo
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return None


def simd_features(cpuinfo: str | None = None) -> str:
    """'AVX2 + AVX-512 + VNNI + BF16' from /proc/cpuinfo's flags; '' where unknown."""
    flags = cpu_flags(cpuinfo) or set()
    return " + ".join(name for flag, name in SIMD_FEATURES if flag in flags)


def _gpus() -> list[str]:
    """NVIDIA GPUs the driver lists (no CUDA library needed)."""
    root = Path("/proc/driver/nvidia/gpus")
    names = []
    try:
        folders = sorted(root.iterdir()) if root.is_dir() else []
    except OSError:
        folders = []
    for folder in folders:
        for line in _read(str(folder / "information")).splitlines():
            if line.startswith("Model:"):
                names.append(line.split(":", 1)[1].strip())
    return names


def machine() -> str:
    """One line: the board (Jetson, Raspberry Pi) or CPU model, usable cores, the CPU
    features timings depend on, GPUs, OS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 0
    parts = [p for p in (_read("/proc/device-tree/model"), cpu_model()) if p]
    parts = parts or [platform.machine() or "unknown CPU"]
    parts.append(f"{cores} cores")
    parts += [f for f in (simd_features(),) if f]
    parts += _gpus()
    parts.append(f"{platform.system()} {platform.machine()}, Python {platform.python_version()}")
    return ", ".join(parts)


def provenance(argv: list[str] | None = None) -> dict:
    """``{"command", "date", "machine", "wastenet_version"}`` for this process, now."""
    return {
        "command": command_line(argv),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "wastenet_version": __version__,
    }


def write_provenance(path: str | Path, argv: list[str] | None = None) -> Path:
    """``provenance()`` as JSON at ``path`` (a training run's provenance.json)."""
    import json

    path = Path(path)
    path.write_text(json.dumps(provenance(argv), indent=2) + "\n", encoding="utf-8")
    return path
