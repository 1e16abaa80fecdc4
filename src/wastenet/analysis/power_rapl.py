"""CPU package energy on x86 from RAPL (``/sys/class/powercap/intel-rapl:*``), around a loop.

Each zone has a cumulative ``energy_uj`` counter that wraps to 0 after
``max_energy_range_uj``; the meter reads every zone often enough (``poll``) that a
counter can wrap at most once between two reads, and adds up the deltas. The total is
the sum of the top-level ``package-*`` zones (falling back to every top-level zone but
``psys``, which already covers the packages): the CPU sockets, not the whole machine.
Where the counters cannot be read (no powercap, no RAPL zones, root-only counters)
``RaplUnavailable`` says why; this module never makes a number up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wastenet.errors import WasteNetError

RAPL_ROOT = Path("/sys/class/powercap")


class RaplUnavailable(WasteNetError):
    def __init__(self, reason: str) -> None:
        super().__init__(f"RAPL not available on this machine ({reason})")
        self.reason = reason


@dataclass(frozen=True)
class RaplZone:
    key: str  # folder name: intel-rapl:0, intel-rapl:0:1
    name: str  # its 'name' file: package-0, core, uncore, dram, psys
    path: Path
    max_range_uj: int

    @property
    def top_level(self) -> bool:
        return self.key.count(":") == 1


def wrap_delta(before: int, after: int, max_range_uj: int) -> int:
    """Microjoules between two reads of a counter that wraps to 0 after ``max_range_uj``."""
    return after - before if after >= before else after + max_range_uj - before


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def _zone(folder: Path) -> RaplZone:
    try:
        name = (folder / "name").read_text().strip() or folder.name
    except OSError:
        name = folder.name
    try:
        max_range = _read_int(folder / "max_energy_range_uj")
        _read_int(folder / "energy_uj")
    except PermissionError as exc:
        raise RaplUnavailable(
            f"{exc.filename}: permission denied; the counters are root-only since Linux 5.10"
        ) from exc
    except OSError as exc:
        raise RaplUnavailable(f"{folder}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise RaplUnavailable(f"{folder}: not a number in its energy files ({exc})") from exc
    if max_range <= 0:
        raise RaplUnavailable(f"{folder}: max_energy_range_uj is {max_range}")
    return RaplZone(folder.name, name, folder, max_range)


def find_zones(root: str | Path = RAPL_ROOT) -> list[RaplZone]:
    """Every readable RAPL zone under ``root``; RaplUnavailable when there is none."""
    root = Path(root)
    if not root.is_dir():
        raise RaplUnavailable(f"no {root}: the kernel exposes no powercap interface here")
    folders = sorted(p for p in root.glob("intel-rapl:*") if p.is_dir())
    if not folders:
        raise RaplUnavailable(f"no intel-rapl:* zones in {root} (not an x86 CPU with RAPL)")
    return [_zone(folder) for folder in folders]


def total_zones(zones: list[RaplZone]) -> list[RaplZone]:
    """The zones whose sum is the CPU's energy: the packages, without double counting."""
    top = [z for z in zones if z.top_level]
    packages = [z for z in top if z.name.startswith("package")]
    return packages or [z for z in top if z.name != "psys"] or top


class RaplMeter:
    """Accumulates every zone's energy between ``start()`` and ``stop()``; call ``poll()``
    at least once per wrap period (minutes at full load) — the loop below polls often."""

    def __init__(self, root: str | Path = RAPL_ROOT) -> None:
        self.zones = find_zones(root)
        self.totals = total_zones(self.zones)
        self._last: dict[str, int] = {}
        self.joules: dict[str, float] = {}

    def _read(self) -> dict[str, int]:
        try:
            return {z.key: _read_int(z.path / "energy_uj") for z in self.zones}
        except (OSError, ValueError) as exc:
            raise RaplUnavailable(f"a counter stopped being readable ({exc})") from exc

    def start(self) -> None:
        self._last = self._read()
        self.joules = {z.key: 0.0 for z in self.zones}

    def poll(self) -> None:
        now = self._read()
        for zone in self.zones:
            delta = wrap_delta(self._last[zone.key], now[zone.key], zone.max_range_uj)
            self.joules[zone.key] += delta / 1e6
        self._last = now

    def stop(self) -> dict[str, float]:
        self.poll()
        return dict(self.joules)

    def total_j(self) -> float:
        return sum(self.joules[z.key] for z in self.totals)


def measure_loop(
    predict: Callable[[], object],
    seconds: float,
    meter: RaplMeter,
    idle_s: float = 0.0,
    poll_s: float = 0.25,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Energy of calling ``predict`` for ``seconds``; with ``idle_s``, the idle power first,
    so the inference's own share (above idle) is reported too."""
    idle_w = _idle_power(meter, idle_s, poll_s, clock, sleep) if idle_s > 0 else None
    meter.start()
    count, t0 = 0, clock()
    last_poll = t0
    while (now := clock()) - t0 < seconds:
        predict()
        count += 1
        if now - last_poll >= poll_s:
            meter.poll()
            last_poll = now
    elapsed = clock() - t0
    meter.stop()
    return loop_result(meter, count, elapsed, idle_w)


def _idle_power(meter: RaplMeter, seconds: float, poll_s: float, clock, sleep) -> float:
    """Mean power while sleeping ``seconds``, polled in slices so no wrap goes unseen."""
    meter.start()
    t0 = clock()
    while (left := t0 + seconds - clock()) > 0:
        sleep(min(left, max(poll_s, 0.05)))
        meter.poll()
    meter.stop()
    return meter.total_j() / max(clock() - t0, 1e-9)


def loop_result(meter: RaplMeter, count: int, elapsed: float, idle_w: float | None) -> dict:
    joules = meter.total_j()
    watts = joules / elapsed if elapsed > 0 else 0.0
    result = {
        "zones": {f"{z.key} ({z.name})": meter.joules[z.key] for z in meter.zones},
        "total_zones": [z.key for z in meter.totals],
        "inferences": count,
        "seconds": elapsed,
        "energy_j": joules,
        "mean_w": watts,
        "idle_w": idle_w,
    }
    if count and elapsed > 0:
        ips = count / elapsed
        result.update(ips=ips, j_per_inference=joules / count)
        result["ips_per_w"] = ips / watts if watts > 0 else None
        if idle_w is not None:
            result["marginal_j_per_inference"] = (watts - idle_w) / ips
    return result
