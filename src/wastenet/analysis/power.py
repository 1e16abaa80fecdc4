"""Board power (paper sections 4.4.2 and 5.5, figures 14-15) as a calculator and a log reader.

The paper reads the Jetson Nano's input power from ``tegrastats`` (``POM_5V_IN cur/avg``,
milliwatts) in three states: idle with no model, idle with the model loaded, and
inferring; then divides throughput by power for efficiency (figure 15, IPS per watt)
and capacity by power for battery life. This module parses ``tegrastats`` lines of the
Nano (``POM_5V_IN 2086/2086``) and of Xavier/Orin (``VDD_IN 5035mW/5035mW``), with or
without the leading ``MM-DD-YYYY HH:MM:SS`` timestamp, lines samples up with the states
of a ``states.json`` (``wastenet power protocol`` writes one) or with a bin run's
``timings.jsonl``, and does the arithmetic: J per inference = W / IPS, IPS per W,
hours of battery for a duty cycle. Deploy side: no torch (numpy only to read a run log).
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from wastenet.errors import WasteNetError

INPUT_RAILS = ("POM_5V_IN", "VDD_IN")  # the board's input rail: Nano (JetPack 4), Xavier/Orin
STATE_NAMES = ("idle", "loaded", "inferring")  # the paper's figure 14, in its order
TIMESTAMP_FORMAT = "%m-%d-%Y %H:%M:%S"
_STAMP = re.compile(r"^\s*(\d{2}-\d{2}-\d{4} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)\s")
_RAIL = re.compile(
    r"(?<![A-Za-z0-9_])(" + "|".join(INPUT_RAILS) + r")\s+(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)"
)

# What the paper reports (section 5.5): the pairs of throughput and input power it gives.
PAPER_IDLE_LOADED_W = 2.0  # figure 14: idle with the model loaded, either profile
PAPER_MAXN = {"profile": "MAXN (10 W)", "ips": 17.0, "inferring_w": 5.0}
PAPER_5W = {"profile": "5 W", "ips": 11.0, "inferring_w": 3.5}
PAPER_STATED_MAXN_IPS_PER_W = 3.6  # figure 15 as the text states it
PAPER_STATED_GAP_IPS_PER_W = 0.8  # "0.8 higher than the 5-Watt power profile"
PAPER_PHONE_BATTERY_WH = 25.0  # 5000 mAh at 5 V
PAPER_STATED_IDLE_HOURS = 12.5
PAPER_STATED_INFERRING_5W_HOURS = 26.0
PAPER_STATED_MONTH_WH = 1400.0


@dataclass(frozen=True)
class PowerSample:
    """One tegrastats line: input power in watts (current and tegrastats' running average)."""

    watts: float
    avg_watts: float | None
    rail: str
    t: float | None  # epoch seconds of the line's local-time stamp; None when it has none
    line: int  # 1-based line number in the log


@dataclass
class TegrastatsLog:
    samples: list[PowerSample]
    skipped: int  # malformed lines (no input rail, bad timestamp); blank lines not counted
    skipped_lines: list[int]  # the first few of them, 1-based

    @property
    def timestamped(self) -> list[PowerSample]:
        return [s for s in self.samples if s.t is not None]


def parse_stamp(text: str) -> float:
    """``MM-DD-YYYY HH:MM:SS[.ffffff]`` in the machine's local time -> epoch seconds."""
    fmt = TIMESTAMP_FORMAT + (".%f" if "." in text else "")
    return datetime.strptime(text, fmt).timestamp()


def has_stamp(text: str) -> bool:
    """Whether a line starts with a tegrastats timestamp."""
    return _STAMP.match(text) is not None


def format_stamp(t: float) -> str:
    """Epoch seconds -> the tegrastats stamp with milliseconds (``parse_stamp`` reads it)."""
    return datetime.fromtimestamp(t).strftime(TIMESTAMP_FORMAT + ".%f")[:-3]


def parse_line(text: str, line: int = 0) -> PowerSample:
    """One tegrastats line; ValueError when it has no input rail or a bad timestamp."""
    stamp = _STAMP.match(text)
    t = parse_stamp(stamp.group(1)) if stamp else None
    rail = _RAIL.search(text)
    if rail is None:
        raise ValueError(f"no {' or '.join(INPUT_RAILS)} reading")
    avg = rail.group(3)
    return PowerSample(
        watts=int(rail.group(2)) / 1000,
        avg_watts=int(avg) / 1000 if avg is not None else None,
        rail=rail.group(1),
        t=t,
        line=line,
    )


def parse_lines(lines, keep_examples: int = 5) -> TegrastatsLog:
    """Every line with an input-rail reading; malformed ones are counted and skipped."""
    samples, skipped, examples = [], 0, []
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            samples.append(parse_line(text, number))
        except ValueError:
            skipped += 1
            if len(examples) < keep_examples:
                examples.append(number)
    return TegrastatsLog(samples, skipped, examples)


def read_tegrastats(path: str | Path) -> TegrastatsLog:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return parse_lines(handle)
    except OSError as exc:
        raise WasteNetError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def skipped_note(log: TegrastatsLog) -> str:
    if not log.skipped:
        return ""
    lines = ", ".join(map(str, log.skipped_lines)) + (" ..." if log.skipped > 5 else "")
    return f"skipped {log.skipped} malformed line(s) (line {lines})"


def summarize(watts: list[float]) -> dict:
    """Count, mean, median, min and max of power readings (None values when empty)."""
    if not watts:
        return {"samples": 0, "mean_w": None, "median_w": None, "min_w": None, "max_w": None}
    return {
        "samples": len(watts),
        "mean_w": statistics.fmean(watts),
        "median_w": statistics.median(watts),
        "min_w": min(watts),
        "max_w": max(watts),
    }


# --- the paper's arithmetic ---------------------------------------------------------------


def _positive(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise WasteNetError(f"{name} must be a number > 0 (got {value})")
    return float(value)


def ips_per_watt(ips: float, watts: float) -> float:
    """Figure 15's efficiency: inferences per second per watt (= inferences per joule)."""
    return _positive("IPS", ips) / _positive("power (W)", watts)


def joules_per_inference(watts: float, ips: float) -> float:
    """Energy per inference: J = W / IPS (the whole board's power, idle share included)."""
    return _positive("power (W)", watts) / _positive("IPS", ips)


def hours_on_battery(capacity_wh: float, watts: float) -> float:
    return _positive("capacity (Wh)", capacity_wh) / _positive("power (W)", watts)


def battery_life(
    capacity_wh: float, items_per_hour: float, awake_s: float, idle_w: float, active_w: float
) -> dict:
    """Hours on a battery for a duty cycle: awake ``awake_s`` at ``active_w`` per item,
    ``idle_w`` between items. More awake time than an hour holds means always awake
    (``saturated``)."""
    _positive("capacity (Wh)", capacity_wh)
    for name, value in (("items per hour", items_per_hour), ("awake seconds", awake_s)):
        if not (math.isfinite(value) and value >= 0):
            raise WasteNetError(f"{name} must be a number >= 0 (got {value})")
    _positive("idle power (W)", idle_w)
    _positive("active power (W)", active_w)
    wanted = items_per_hour * awake_s
    awake = min(wanted, 3600.0)
    mean_w = (awake * active_w + (3600.0 - awake) * idle_w) / 3600.0
    hours = capacity_wh / mean_w
    return {
        "capacity_wh": capacity_wh,
        "awake_s_per_hour": awake,
        "awake_share": awake / 3600.0,
        "saturated": wanted > 3600.0,
        "mean_w": mean_w,
        "hours": hours,
        "days": hours / 24,
        "wh_per_day": mean_w * 24,
    }


def paper_figures() -> dict:
    """Section 5.5's numbers recomputed from the inputs the paper gives, next to its claims."""
    maxn = ips_per_watt(PAPER_MAXN["ips"], PAPER_MAXN["inferring_w"])
    low = ips_per_watt(PAPER_5W["ips"], PAPER_5W["inferring_w"])
    return {
        "maxn_ips_per_w": maxn,
        "5w_ips_per_w": low,
        "gap_ips_per_w": maxn - low,
        "maxn_j_per_inference": joules_per_inference(PAPER_MAXN["inferring_w"], PAPER_MAXN["ips"]),
        "5w_j_per_inference": joules_per_inference(PAPER_5W["inferring_w"], PAPER_5W["ips"]),
        "idle_hours_on_25wh": hours_on_battery(PAPER_PHONE_BATTERY_WH, PAPER_IDLE_LOADED_W),
        "inferring_5w_hours_on_25wh": hours_on_battery(
            PAPER_PHONE_BATTERY_WH, PAPER_5W["inferring_w"]
        ),
        "idle_wh_per_30_days": PAPER_IDLE_LOADED_W * 24 * 30,
        "stated": {
            "maxn_ips_per_w": PAPER_STATED_MAXN_IPS_PER_W,
            "gap_ips_per_w": PAPER_STATED_GAP_IPS_PER_W,
            "idle_hours_on_25wh": PAPER_STATED_IDLE_HOURS,
            "inferring_5w_hours": PAPER_STATED_INFERRING_5W_HOURS,
            "idle_wh_per_month": PAPER_STATED_MONTH_WH,
        },
    }


# --- states: idle / loaded / inferring ------------------------------------------------------


@dataclass(frozen=True)
class State:
    name: str
    start: float  # epoch seconds (wall clock)
    end: float
    inferences: int | None = None


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_states(data: object, source: str = "states.json") -> list[State]:
    """States from a ``states.json`` object: ``{"states": [{"name", "start", "end"}, ...]}``."""
    items = data.get("states") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise WasteNetError(f"{source}: needs a non-empty 'states' list")
    states = []
    for i, item in enumerate(items):
        ok = isinstance(item, dict) and isinstance(item.get("name"), str)
        if not (ok and _finite(item.get("start")) and _finite(item.get("end"))):
            raise WasteNetError(f"{source}: state {i} needs a name and numeric start/end")
        if item["end"] <= item["start"]:
            raise WasteNetError(f"{source}: state {item['name']!r} ends before it starts")
        n = item.get("inferences")
        inferences = int(n) if _finite(n) and n >= 0 else None
        states.append(State(item["name"], float(item["start"]), float(item["end"]), inferences))
    return states


def load_states(path: str | Path) -> list[State]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise WasteNetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise WasteNetError(f"{path}: not JSON ({exc})") from exc
    return parse_states(data, str(path))


def _require_stamps(log: TegrastatsLog) -> list[PowerSample]:
    stamped = log.timestamped
    if not stamped:
        raise WasteNetError(
            "the tegrastats log has no timestamps; lining it up needs 'MM-DD-YYYY HH:MM:SS' "
            "at the start of each line (wastenet power protocol writes them)"
        )
    return stamped


def power_per_state(log: TegrastatsLog, states: list[State], settle_s: float = 0.0) -> list[dict]:
    """Power of the samples stamped inside each state, ``[start + settle_s, end)``; with an
    inference count, its IPS, J per inference and IPS per W, and the J per inference above
    the ``loaded`` state's power (the inference's own share)."""
    stamped = _require_stamps(log)
    rows = []
    for state in states:
        watts = [s.watts for s in stamped if state.start + settle_s <= s.t < state.end]
        row = {"name": state.name, "start": state.start, "end": state.end}
        row["duration_s"] = state.end - state.start
        row.update(summarize(watts))
        if state.inferences and row["mean_w"]:
            ips = state.inferences / row["duration_s"]
            row.update(inferences=state.inferences, ips=ips)
            row["j_per_inference"] = joules_per_inference(row["mean_w"], ips)
            row["ips_per_w"] = ips_per_watt(ips, row["mean_w"])
        rows.append(row)
    base = next((r["mean_w"] for r in rows if r["name"] == "loaded" and r["mean_w"]), None)
    for row in rows:
        if base is not None and "ips" in row:
            row["marginal_j_per_inference"] = (row["mean_w"] - base) / row["ips"]
    return rows


# --- a bin run's own log --------------------------------------------------------------------


def _run_frames(run_dir: Path) -> tuple[list[tuple[float, bool]], int, Path]:
    from wastenet.analysis.latency import _numbers, _read_jsonl

    path = run_dir / "timings.jsonl"
    if not path.is_file():
        raise WasteNetError(f"{run_dir}: not a bin run folder (no timings.jsonl)")
    records, bad = _read_jsonl(path, lambda r: _numbers(r, "t"))
    if not records:
        raise WasteNetError(f"{path}: no readable frame records ({bad} malformed lines)")
    frames = sorted((float(r["t"]), bool(r.get("present", True))) for r in records)
    return frames, bad, path


def _spacing(times: list[float]) -> float:
    """Typical time between samples (1 s, tegrastats' default, when it cannot be told)."""
    gaps = [b - a for a, b in zip(times, times[1:], strict=False) if b > a]
    return statistics.median(gaps) if gaps else 1.0


def align_run(log: TegrastatsLog, run_dir: str | Path, offset_s: float | None = None) -> dict:
    """Power during a bin run, from the samples stamped between its first and last frame.

    ``timings.jsonl`` stamps frames with ``time.perf_counter()``, not the wall clock, so
    wall = t + ``offset_s``. Without one, the run's own ``run.json`` gives it: the bin
    records the wall clock (UTC) at a reading of its monotonic clock as the run starts
    (``runtime.timings.clock_anchor``). A run folder from before that falls back on the
    file's modification time standing for its last frame (the bin closes it as the run
    ends): approximate to the time the bin took to stop, and wrong if the file was
    copied without its times. A sample counts as ``inferring`` when a frame the bin
    inferred on falls within one sample spacing after it.
    """
    from wastenet.runtime.timings import read_clock

    run_dir = Path(run_dir)
    stamped = _require_stamps(log)
    frames, bad, path = _run_frames(run_dir)
    anchor = "--clock-offset"
    clock = read_clock(run_dir) if offset_s is None else None
    if clock is not None:
        offset_s = float(clock["offset_s"])
        anchor = f"run.json clock (the run started {clock['utc']})"
    elif offset_s is None:
        offset_s = path.stat().st_mtime - frames[-1][0]
        anchor = "timings.jsonl modification time (approximate: run.json has no clock)"
    start, end = frames[0][0] + offset_s, frames[-1][0] + offset_s
    inside = [s for s in stamped if start <= s.t <= end]
    if not inside:
        raise WasteNetError(
            f"no power sample falls inside the run ({format_stamp(start)} to "
            f"{format_stamp(end)}, from {anchor}); the log covers {format_stamp(stamped[0].t)} "
            f"to {format_stamp(stamped[-1].t)}; pass --clock-offset (the run's wall clock "
            "minus its perf_counter, s)"
        )
    step = _spacing([s.t for s in stamped])
    present = [t + offset_s for t, p in frames if p]
    busy, waiting, j = [], [], 0
    for sample in inside:
        while j < len(present) and present[j] < sample.t:
            j += 1
        hit = j < len(present) and present[j] < sample.t + step
        (busy if hit else waiting).append(sample.watts)
    duration = end - start
    result = {
        "anchor": anchor,
        "offset_s": offset_s,
        "start": start,
        "end": end,
        "duration_s": duration,
        "frames": len(frames),
        "inferences": len(present),
        "skipped_lines": bad,
        "all": summarize([s.watts for s in inside]),
        "inferring": summarize(busy),
        "waiting": summarize(waiting),
    }
    mean_w = result["all"]["mean_w"]
    result["energy_j"] = mean_w * duration
    if present and duration > 0:
        result["ips"] = len(present) / duration
        result["j_per_inference"] = result["energy_j"] / len(present)
        result["ips_per_w"] = result["ips"] / mean_w
    return result
