"""The bin's watchdog: a loop stuck where no timeout reaches ends the process (exit code 4).

What the loop waits for at capture is bounded by the sources' own timeouts; what it
cannot bound is code it calls: an engine's ``predict`` (a hung GPU driver), a servo
driver's I2C write, a hook. The loop marks the stage it is in (``BinLoop.stage``: a
name and ``time.monotonic()`` at its start) and this thread looks every ``POLL_S``.
The run is stuck when

* a stage other than capture has run for ``stuck_s`` (``wastenet run --stuck-s``), or
* a stop was asked (SIGINT/SIGTERM) and the run is still going ``STOP_GRACE_S`` later:
  a main thread inside a C call never gets to run the signal handler's effect.

Then ``on_stuck(reason)`` runs on this thread; the bin's handler closes the doors if the servo
driver answers within a second, writes run.json as stuck, says so on stderr and ends
the process with ``ExitCode.STUCK`` (4), so a supervisor restarts the bin (which closes
every door at start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLL_S = 0.1
STUCK_S = 30.0  # default --stuck-s: far above any one inference, servo move or store write
STOP_GRACE_S = 5.0  # a stopped run normally ends within about a second
UNBOUNDED = ("capture",)  # stages whose waits the sources bound themselves


class Watchdog:
    """Watches ``stage()`` (None or (name, monotonic start)) and ``stop`` on a thread of its own."""

    def __init__(
        self,
        stage: Callable[[], tuple[str, float] | None],
        stop: threading.Event,
        on_stuck: Callable[[str], None],
        stuck_s: float = STUCK_S,
        grace_s: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage, self.stop, self.on_stuck = stage, stop, on_stuck
        self.stuck_s = float(stuck_s)
        self.grace_s = STOP_GRACE_S if grace_s is None else float(grace_s)
        self.monotonic = monotonic
        self.fired: str | None = None
        self._stop_seen: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)

    def start(self) -> Watchdog:
        self._thread.start()
        return self

    def check(self) -> str | None:
        """Why the run is stuck now, or None."""
        now = self.monotonic()
        current = self.stage()
        where = f" (in {current[0]})" if current else ""
        if self.stop.is_set():  # is_set takes no lock: the signal handler's set() never waits
            if self._stop_seen is None:
                self._stop_seen = now
            elif now - self._stop_seen >= self.grace_s:
                return f"the run did not stop within {self.grace_s:g} s of SIGINT/SIGTERM{where}"
        if current is not None:
            name, since = current
            if name not in UNBOUNDED and now - since >= self.stuck_s:
                return f"no progress for {now - since:.1f} s in {name} (--stuck-s {self.stuck_s:g})"
        return None

    def _run(self) -> None:
        while not self._done.wait(POLL_S):
            reason = self.check()
            if reason is not None:
                self.fired = reason
                self.on_stuck(reason)
                return

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)
