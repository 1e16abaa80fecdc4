"""The paper's power protocol on a Jetson (section 4.4.2): tegrastats in the background while
the board sits idle, then holds the model loaded, then infers; each state's wall-clock
start and end go to ``states.json`` and the samples are lined up with them by timestamp.

``tegrastats`` on JetPack 4 (the Nano) prints no timestamps, and newer ones stamp whole
seconds, so the recorder stamps every line that has none as it reads it (milliseconds,
the same ``MM-DD-YYYY HH:MM:SS`` form) and runs tegrastats line-buffered (``stdbuf -oL``)
so lines are read as they are printed. Without ``tegrastats`` on PATH this is not a
Jetson: ``NotAJetson``, and no number is produced.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from wastenet.analysis.power import format_stamp, has_stamp, load_states, power_per_state
from wastenet.analysis.power import read_tegrastats as _read_log
from wastenet.errors import WasteNetError


class NotAJetson(WasteNetError):
    def __init__(self) -> None:
        super().__init__(
            "tegrastats not found: this is not a Jetson (no 'tegrastats' on PATH; the power "
            "protocol needs a Jetson's own power monitor)"
        )


def find_tegrastats() -> str:
    exe = shutil.which("tegrastats")
    if exe is None:
        raise NotAJetson()
    return exe


class TegrastatsRecorder:
    """Runs ``tegrastats --interval MS`` and writes its lines, timestamped, to ``log_path``."""

    def __init__(self, exe: str, log_path: str | Path, interval_ms: int = 500) -> None:
        self.exe, self.log_path, self.interval_ms = exe, Path(log_path), interval_ms
        self.lines = 0
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def command(self) -> list[str]:
        stdbuf = shutil.which("stdbuf")
        return [*([stdbuf, "-oL"] if stdbuf else []), self.exe, "--interval", str(self.interval_ms)]

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed by the thread)
        try:
            self._proc = subprocess.Popen(
                self.command(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
            )
        except OSError as exc:
            handle.close()
            raise WasteNetError(f"cannot start tegrastats ({exc.strerror or exc})") from exc
        self._thread = threading.Thread(target=self._copy, args=(handle,), daemon=True)
        self._thread.start()

    def _copy(self, handle) -> None:
        with handle:
            for line in self._proc.stdout:
                line = line.rstrip("\n")
                if not line.strip():
                    continue
                if not has_stamp(line):
                    line = f"{format_stamp(time.time())} {line}"
                handle.write(line + "\n")
                handle.flush()
                self.lines += 1

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._proc = None


def power_mode() -> str | None:
    """``nvpmodel -q``'s answer (the power profile, e.g. MAXN or 5W), when it has one."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return " ".join(out.split()) or None


def _state(name: str, start: float, end: float, **extra) -> dict:
    return {
        "name": name,
        "start": start,
        "end": end,
        "start_local": format_stamp(start),
        "end_local": format_stamp(end),
        **extra,
    }


def _infer_for(engine, seconds: float, warmup: int, seed: int) -> tuple[float, float, int]:
    import numpy as np

    h, w = engine.meta.height, engine.meta.width
    batch = np.random.default_rng(seed).standard_normal((1, 3, h, w)).astype(np.float32)
    for _ in range(warmup):
        engine.predict(batch)
    count, start = 0, time.time()
    while time.time() - start < seconds:
        engine.predict(batch)
        count += 1
    return start, time.time(), count


def record_states(
    model: str | Path,
    durations: dict[str, float],
    loader: Callable,
    sleep: Callable[[float], None] = time.sleep,
    warmup: int = 5,
    seed: int = 0,
    print_fn: Callable[[str], None] = print,
) -> tuple[list[dict], float]:
    """Idle (no model), loaded (engine open, not inferring), inferring (random input of the
    model's size), each for ``durations[name]`` seconds; returns the states and load time."""
    states = []
    print_fn(f"idle, no model: {durations['idle']:g} s")
    start = time.time()
    sleep(durations["idle"])
    states.append(_state("idle", start, time.time()))
    t0 = time.perf_counter()
    engine = loader(model)
    load_s = time.perf_counter() - t0
    try:
        print_fn(f"model loaded ({load_s:.1f} s to load), not inferring: {durations['loaded']:g} s")
        start = time.time()
        sleep(durations["loaded"])
        states.append(_state("loaded", start, time.time()))
        print_fn(f"inferring: {durations['inferring']:g} s")
        start, end, count = _infer_for(engine, durations["inferring"], warmup, seed)
        states.append(_state("inferring", start, end, inferences=count, ips=count / (end - start)))
    finally:
        engine.close()
    return states, load_s


def run_protocol(
    model: str | Path,
    log_path: str | Path,
    states_path: str | Path,
    durations: dict[str, float],
    interval_ms: int = 500,
    settle_s: float = 0.0,
    loader: Callable | None = None,
    print_fn: Callable[[str], None] = print,
) -> dict:
    """The whole protocol; NotAJetson before anything starts where tegrastats is absent."""
    exe = find_tegrastats()
    if not Path(model).exists():
        raise WasteNetError(f"{model}: no such model file")
    if loader is None:
        from wastenet.accelerate import load_engine as loader
    recorder = TegrastatsRecorder(exe, log_path, interval_ms)
    recorder.start()
    try:
        time.sleep(max(2 * interval_ms / 1000, 1.0))  # first samples before the idle state
        states, load_s = record_states(model, durations, loader, print_fn=print_fn)
    finally:
        recorder.stop()
    doc = {
        "model": str(model),
        "tegrastats_log": str(log_path),
        "interval_ms": interval_ms,
        "power_mode": power_mode(),
        "load_s": load_s,
        "states": states,
    }
    Path(states_path).parent.mkdir(parents=True, exist_ok=True)
    Path(states_path).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    log = _read_log(log_path)
    rows = power_per_state(log, load_states(states_path), settle_s)
    return {"doc": doc, "log": log, "rows": rows, "lines": recorder.lines}
