"""Faulty parts behind the bin's real interfaces: an engine wrapping the real ONNX engine,
and the ServoKit under the real PCA9685 driver (the I2C hardware, the one thing simulated).

Both are used in-process by the tests and in a subprocess by ``binproc.py``, so their
plans are plain JSON-able values.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

OPEN_ANGLE, CLOSED_ANGLE = 90.0, 0.0  # the bundled door map's angles


class FaultyEngine:
    """The real engine until call ``raise_at`` (raises) or ``hang_at`` (never returns,
    after touching ``marker``); the calls before go through to it unchanged."""

    def __init__(self, real, raise_at=None, hang_at=None, marker=None) -> None:
        self.real, self.meta = real, real.meta
        self.raise_at, self.hang_at, self.marker = raise_at, hang_at, marker
        self.calls = 0
        self.raised_t: float | None = None

    def predict(self, batch):
        self.calls += 1
        if self.calls == self.raise_at:
            self.raised_t = time.perf_counter()
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : device lost")
        if self.calls == self.hang_at:
            if self.marker:
                Path(self.marker).touch()
            threading.Event().wait()  # a hung driver: no timeout, no return
        return self.real.predict(batch)

    def close(self) -> None:
        self.real.close()


class ServoPlan:
    """What the simulated servo hardware does with the n-th angle written (1-based, all
    channels): ``fail`` raises the I2C error Linux gives (EREMOTEIO), ``stall_s`` delays
    every write, ``hang_at`` never returns. Every angle that reached a servo is logged
    (``moves``, and a JSONL file ``log`` for a subprocess)."""

    def __init__(self, log=None, fail=(), fail_all=False, stall_s=0.0, hang_at=None) -> None:
        self.log = Path(log) if log else None
        self.fail, self.fail_all = set(fail), fail_all
        self.stall_s, self.hang_at = float(stall_s), hang_at
        self.writes = 0
        self.moves: list[dict] = []
        self._lock = threading.Lock()

    def write(self, channel: int, angle: float) -> None:
        with self._lock:
            self.writes += 1
            n = self.writes
        if n == self.hang_at:
            threading.Event().wait()
        if self.stall_s:
            time.sleep(self.stall_s)
        if self.fail_all or n in self.fail:
            raise OSError(121, "Remote I/O error")
        move = {"t": time.perf_counter(), "channel": channel, "angle": float(angle), "n": n}
        self.moves.append(move)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(move) + "\n")


class _Servo:
    def __init__(self, channel: int, plan: ServoPlan) -> None:
        self.channel, self.plan = channel, plan
        self.actuation_range = 180
        self._angle = None

    def set_pulse_width_range(self, lo: int, hi: int) -> None:
        self.pulse_range = (lo, hi)

    @property
    def angle(self):
        return self._angle

    @angle.setter
    def angle(self, value) -> None:
        self.plan.write(self.channel, value)
        self._angle = value


class SimServoKit:
    """The surface of adafruit_servokit.ServoKit the driver uses: ``kit.servo[ch].angle = deg``."""

    def __init__(self, channels: int, address: int, plan: ServoPlan) -> None:
        self.address = address
        self.servo = [_Servo(ch, plan) for ch in range(channels)]


def servokit_factory(plan: ServoPlan):
    """A stand-in for ``actuators._servokit_factory``: ``pca9685://`` gets this hardware."""

    def for_bus(bus):
        return lambda channels, address: SimServoKit(channels, address, plan)

    return for_bus
