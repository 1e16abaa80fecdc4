"""Assembles a bin from options (source, model, doors, actuator, store, display) and runs it.

``BinOptions`` defaults are the README's main job: the bundled model on the bundled
TrashNet samples, replayed as a camera would see them, with simulated servos.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from wastenet.errors import ConfigError, ExitCode, WasteNetError
from wastenet.provenance import provenance
from wastenet.runtime.model_watch import EVERY_S, ModelWatch
from wastenet.runtime.watchdog import STUCK_S
from wastenet.sureness import NotSureRule

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL = ASSETS / "model" / "wastenet-lite0.onnx"
DEFAULT_SAMPLES = ASSETS / "samples"
SAMPLE_REPLAY = {"fps": 15, "hold": 15, "gap": 8}  # each sample in view for 1 s, 0.5 s apart


@dataclass
class BinOptions:
    source: str | None = None  # None: the bundled samples, replayed at SAMPLE_REPLAY
    model: str | None = None
    actuator: str = "sim://"
    doors: str | None = None
    vote: int = 10
    threshold: float | None = None  # None: the model card's not_sure_below
    min_share: float = 0.5
    gate: bool = True
    gate_threshold: float = 0.03
    crop_to_object: bool | None = None  # None: the door map's crop_to_object
    headless: bool | None = None  # None: headless when no display exists
    mjpeg_port: int | None = None
    store: str | None = None
    store_policy: str = "uncertain"
    store_quota_mb: float | None = None
    run_dir: str | None = None
    max_frames: int | None = None
    stuck_s: float = STUCK_S  # the watchdog: a stage stuck this long ends the run, exit 4
    model_watch_s: float = EVERY_S  # how often a --model folder is looked at for an update

    def check(self) -> None:
        """Every number in range before anything opens; a ConfigError names the option."""
        _require(_whole(self.vote, 1), f"--vote {self.vote!r}: the vote window must be >= 1")
        _require(
            self.threshold is None or _real(self.threshold, 0, 1),
            f"--threshold {self.threshold!r}: must be a finite number in [0, 1]",
        )
        _require(
            _real(self.min_share, 0, 1) and self.min_share < 1,
            f"--min-share {self.min_share!r}: must be a finite number in [0, 1)",
        )
        _require(
            _real(self.gate_threshold, 0, 1) and 0 < self.gate_threshold < 1,
            f"--gate-threshold {self.gate_threshold!r}: the changed-pixel share must be "
            "a finite number in (0, 1)",
        )
        _require(
            self.mjpeg_port is None or _whole(self.mjpeg_port, 1, 65535),
            f"--mjpeg-port {self.mjpeg_port!r}: a TCP port is 1..65535",
        )
        _require(
            self.store_quota_mb is None
            or (_real(self.store_quota_mb, 0, math.inf) and self.store_quota_mb > 0),
            f"--store-quota-mb {self.store_quota_mb!r}: must be a finite number of MB > 0",
        )
        _require(
            self.max_frames is None or _whole(self.max_frames, 0),
            f"--max-frames {self.max_frames!r}: must be >= 0",
        )
        _require(
            _real(self.stuck_s, 0, math.inf) and self.stuck_s > 0,
            f"--stuck-s {self.stuck_s!r}: must be a finite number of seconds > 0",
        )
        _require(
            _real(self.model_watch_s, 0, math.inf),
            f"model_watch_s {self.model_watch_s!r}: must be a finite number of seconds >= 0",
        )
        if self.store:
            from wastenet.runtime.store import SamplePolicy

            # its syntax only: the "uncertain" threshold comes with the model, loaded later
            SamplePolicy.parse(self.store_policy)


def not_sure_rule(opts: BinOptions, engine) -> NotSureRule:
    """The model card's "not sure" rule, with --threshold as its bar where given."""
    return NotSureRule.of(engine.meta, opts.threshold)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _whole(value, lo: int, hi: int | None = None) -> bool:
    ok_type = isinstance(value, int) and not isinstance(value, bool)
    return ok_type and lo <= value and (hi is None or value <= hi)


def _real(value, lo: float, hi: float) -> bool:
    ok_type = isinstance(value, int | float) and not isinstance(value, bool)
    return ok_type and math.isfinite(value) and lo <= value <= hi


def prepare_run_dir(run_dir: Path) -> None:
    """Create the run folder and write a probe in it, so a bad --run-dir fails before the run."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--run-dir {run_dir}: is a file; give a folder for the run's timings")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as exc:
        raise ConfigError(
            f"--run-dir {run_dir}: cannot write there ({exc.strerror or exc})"
        ) from exc


def _missing_model_message(path: Path) -> str:
    return (
        f"{path}: no model there. Train and export one (wastenet train ..., then "
        f"wastenet export ... --format onnx) and pass it with --model PATH, "
        f"or place the released wastenet-lite0.onnx at {DEFAULT_MODEL}"
    )


def run_bin(
    opts: BinOptions,
    print_fn: Callable[[str], None] = print,
    stop: threading.Event | None = None,
    engine=None,
):
    """Build every part, run the loop until the source ends or a signal, close everything.

    ``engine`` replaces loading ``opts.model`` (tests and benchmarks pass their own).
    """
    from wastenet.accelerate import load_engine
    from wastenet.accelerate.select import choice_dict, choose_engine, describe, folder_reference
    from wastenet.runtime.actuators import open_actuator
    from wastenet.runtime.gate import GateConfig, PresenceGate
    from wastenet.runtime.loop import BinLoop
    from wastenet.runtime.sources import open_source
    from wastenet.runtime.timings import TimingsWriter, clock_anchor
    from wastenet.runtime.vote import MajorityVote
    from wastenet.runtime.watchdog import Watchdog

    opts.check()
    model = Path(opts.model) if opts.model else DEFAULT_MODEL
    choice = None
    owned = engine is None  # the engines this run loads, it closes
    if engine is None:
        if not model.exists():
            raise WasteNetError(_missing_model_message(model))
        if opts.model is None or model.is_dir():  # a bundle: its fastest verified engine
            choice = choose_engine(folder_reference(model) if model.is_dir() else model)
            model = choice.path
            print_fn(f"engine: {model.name} ({choice.reason})")
            for line in describe(choice):  # every candidate, and why one was not taken
                print_fn(line)
        engine = load_engine(model)
    doors = _load_doors(opts, engine, print_fn)
    try:
        vote = MajorityVote(opts.vote, not_sure_rule(opts, engine).threshold, opts.min_share)
    except ValueError as exc:
        raise WasteNetError(str(exc)) from exc
    watch = None
    if opts.model is not None and Path(opts.model).is_dir():  # a folder an update may swap
        watch = ModelWatch(
            opts.model, _folder_engine, engine.meta.labels, opts.model_watch_s, print_fn=print_fn
        )
    run_dir = Path(opts.run_dir or Path("runs") / "bin" / time.strftime("%Y%m%d-%H%M%S"))
    prepare_run_dir(run_dir)
    record = {  # run.json: written at the start (the clock anchor), rewritten at the end
        "status": "running",
        "exit_code": None,
        "config": asdict(opts),
        "provenance": provenance(),
        "model": str(model),
        "engine_choice": choice_dict(choice) if choice else None,
        "clock": clock_anchor(),
        "summary": None,
    }
    parts: list = []  # closed in reverse order, whatever happens, after the doors
    actuator = writer = loop = watchdog = None
    stop = stop or threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        # the store first: a folder another bin holds, or read-only, stops the run before
        # any servo moves (exit 2, nothing ran)
        store, store_hook = _store_hook(opts, engine, parts) if opts.store else (None, None)
        frame_hw = (engine.meta.height, engine.meta.width)  # the card's input size
        source = (
            open_source(str(DEFAULT_SAMPLES), frame_hw=frame_hw, **SAMPLE_REPLAY)
            if opts.source is None
            else open_source(opts.source, stop=stop, frame_hw=frame_hw)
        )
        parts.append(source)
        actuator = open_actuator(opts.actuator, doors)
        actuator.home()  # a known state: a door a killed run left open closes now
        actuator.start_timer()  # doors close on time, frames or not; close() stops it
        writer = TimingsWriter(run_dir)
        parts.append(writer)
        writer.write_json("run.json", record)
        hooks = _display_hooks(opts, actuator, parts)
        if store_hook is not None:
            hooks.append(("store", store_hook))
        hooks.append(
            (
                "record",
                lambda r: writer.frame(
                    r.frame.index, r.frame.t_capture, r.present, r.label, r.times
                ),
            )
        )
        announce = _announcer(writer, print_fn)
        gate = PresenceGate(GateConfig(threshold=opts.gate_threshold)) if opts.gate else None
        crop = doors.crop_to_object if opts.crop_to_object is None else opts.crop_to_object
        loop = BinLoop(
            source, engine, vote, actuator, doors, gate, hooks, [announce], crop_to_object=crop,
            model_watch=watch,
            on_swap=[_swapper(opts, vote, store, engine if owned else None)],
        )  # fmt: skip
        on_stuck = _stuck_handler(record, loop, actuator, writer)
        watchdog = Watchdog(lambda: loop.stage, stop, on_stuck, opts.stuck_s).start()
        summary = loop.run(opts.max_frames, stop)
        lost = summary.source_lost is not None
        record.update(
            status="source lost" if lost else "done",
            exit_code=int(ExitCode.SOURCE_LOST if lost else ExitCode.OK),
        )
    except BaseException as exc:  # recorded in run.json, then raised on
        code = ExitCode.BAD_INPUT if isinstance(exc, WasteNetError) else ExitCode.FAILED
        record.update(status="failed", exit_code=int(code), error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if loop is not None:
            loop.stage = ("closing", time.monotonic())  # still watched: closing is bounded too
        if actuator is not None:
            actuator.close()  # the doors first
        for part in reversed(parts):
            part.close()
        if watchdog is not None:
            watchdog.close()
        _restore_signal_handlers(previous)
        if writer is not None:
            record.update(
                summary=_summary_dict(loop.summary) if loop is not None else None,
                clock_end=clock_anchor(),
                model_swaps=watch.swaps if watch is not None else [],
            )
            writer.write_json("run.json", record)
    print_summary(summary, opts.vote, print_fn)
    print_fn(f"run folder: {run_dir} (wastenet latency --run {run_dir})")
    return summary


def _folder_engine(folder: Path):
    """A model folder's fastest verified engine, loaded."""
    from wastenet.accelerate import load_engine
    from wastenet.runtime.updates import engine_this_bin_runs

    return load_engine(engine_this_bin_runs(folder))


def _swapper(opts: BinOptions, vote, store, first_engine) -> Callable:
    """What a swapped engine changes beside the loop: the vote's bar (the new card's, unless
    --threshold fixed it), the store's model version and rule; the replaced engine closes
    (``first_engine``: the one this run loaded itself, else None: a caller's stays open)."""
    running = [first_engine]

    def swapped(engine) -> None:
        vote.min_confidence = not_sure_rule(opts, engine).threshold
        if store is not None:
            store.model_version = model_version(engine)
            store.policy.rule = not_sure_rule(opts, engine)
        if running[0] is not None:
            running[0].close()
        running[0] = engine

    return swapped


def _stuck_handler(record: dict, loop, actuator, writer) -> Callable[[str], None]:
    """What the watchdog does when the loop is stuck (``runtime.watchdog``): close the doors if
    the driver answers, say so, record the run as stuck, and end the process with exit 4."""
    from wastenet.runtime.timings import clock_anchor

    def on_stuck(reason: str) -> None:
        try:
            closed = actuator.emergency_close(timeout_s=1.0)
            doors = "doors closed" if closed else "doors NOT closed: the servo driver is stuck"
            log.error("stuck: %s; %s", reason, doors)
            print(
                f"wastenet: error: stuck: {reason}; {doors} (exit code {ExitCode.STUCK:d})",
                file=sys.stderr,
                flush=True,
            )
            if loop.started_t is not None:
                loop.summary.elapsed_s = loop.clock() - loop.started_t
            record.update(
                status="stuck",
                exit_code=int(ExitCode.STUCK),
                error=f"stuck: {reason}; {doors}",
                summary=_summary_dict(loop.summary),
                clock_end=clock_anchor(),
            )
            writer.flush()
            writer.write_json("run.json", record)
        finally:  # whatever failed above: the main thread is inside a call that never returns
            os._exit(ExitCode.STUCK)

    return on_stuck


def _load_doors(opts: BinOptions, engine, print_fn: Callable[[str], None]):
    """The door map, its class names checked against the model's labels once, at start-up."""
    from wastenet.runtime.doors import BUNDLED_DOORS, check_door_classes, load_door_map

    path = opts.doors or BUNDLED_DOORS
    doors = load_door_map(path)
    missing = check_door_classes(doors, list(engine.meta.labels), str(path))
    if missing:
        print_fn(f"warning: no door for {', '.join(missing)} in {path}; those items stay out")
    return doors


def _announcer(writer, print_fn: Callable[[str], None]) -> Callable:
    """Records each door decision and prints it: the door opened, a driver fault, or no door."""

    def announce(act) -> None:
        writer.actuation({**asdict(act), "queue_s": act.queue_s})
        if act.door is None:  # the model's class has no door in the map: the item stays out
            print_fn(
                f"frame {act.frame_index:5d}: {act.label:<9s} -> no door for class {act.label}"
            )
            return
        status = "opened" if act.ok else "FAILED (driver fault)"
        print_fn(
            f"frame {act.frame_index:5d}: {act.label:<9s} -> door {act.door} {status}"
            f" (queue {act.queue_s * 1000:.0f} ms + servo {act.servo_delay_s * 1000:.0f} ms)"
        )

    return announce


def _display_hooks(opts: BinOptions, actuator, parts: list) -> list:
    from wastenet.runtime.overlay import MjpegServer, Window, display_available, draw_overlay

    headless = (not display_available()) if opts.headless is None else opts.headless
    outputs = []
    if not headless:
        window = Window()
        parts.append(window)
        outputs.append(window.show)
    if opts.mjpeg_port is not None:
        try:
            server = MjpegServer(opts.mjpeg_port)
        except OSError as exc:
            raise WasteNetError(f"MJPEG port {opts.mjpeg_port}: {exc.strerror}") from exc
        parts.append(server)
        outputs.append(server.publish)
    if not outputs:
        return []

    def show(result) -> None:
        label = result.label if result.present else "(empty)"
        bgr = draw_overlay(
            result.frame.image,
            label or "",
            result.confidence,
            result.fps,
            actuator.open_doors(),
        )
        for output in outputs:
            output(bgr)

    return [("display", show)]


def _store_hook(opts: BinOptions, engine, parts: list):
    from wastenet.runtime.store import SamplePolicy, SampleStore

    quota = int(opts.store_quota_mb * 1e6) if opts.store_quota_mb else None
    store = SampleStore(
        opts.store,
        SamplePolicy.parse(opts.store_policy, not_sure_rule(opts, engine)),
        quota,
        model_version(engine),
    )
    parts.append(store)

    def keep(result) -> None:
        if result.probs is not None:
            decided = result.vote.label if result.vote else None
            try:
                store.offer(
                    result.frame.image,
                    result.label,
                    result.probs,
                    decided,
                    result.frame.index,
                    sureness=result.confidence,  # the loop's, by the same rule
                )
            except (
                OSError,
                sqlite3.Error,
                WasteNetError,
            ) as exc:  # a full disk must not stop the bin
                log.error("sample store: %s (sample dropped, bin goes on)", exc)

    return store, keep


def model_version(engine) -> str:
    """What the sample store records of the model that saw a sample."""
    meta = engine.meta
    return f"{meta.architecture}@{(meta.source_hash or '')[:12]} {meta.created}".strip()


def _summary_dict(summary) -> dict:
    return {
        "frames": summary.frames,
        "inferred": summary.inferred,
        "elapsed_s": summary.elapsed_s,
        "fps": summary.fps,
        "ips": summary.ips,
        "actuations": summary.decisions,
        "stages": summary.stages.summary(),
        "source_lost": summary.source_lost,
    }


def print_summary(summary, n: int, print_fn: Callable[[str], None] = print) -> None:
    from wastenet.analysis.latency import queue_delay

    print_fn(
        f"\n{summary.frames} frames ({summary.inferred} inferred) in {summary.elapsed_s:.1f} s"
        f" = {summary.fps:.1f} frames/s; {summary.decisions} door decisions"
    )
    print_fn("| stage | median ms | mean ms | share |\n| --- | ---: | ---: | ---: |")
    for name, s in summary.stages.summary().items():
        print_fn(f"| {name} | {s['median_ms']:.2f} | {s['mean_ms']:.2f} | {s['share']:.0%} |")
    acts = [a for a in summary.actuations if a.ok]
    if acts and summary.ips > 0:
        q = sorted(a.queue_s for a in acts)[len(acts) // 2]
        servo = acts[0].servo_delay_s
        print_fn(
            f"latency: queue {q * 1000:.0f} ms measured (eq. 1 at N={n}, {summary.ips:.1f} IPS:"
            f" {queue_delay(n, summary.ips) * 1000:.0f} ms) + servo {servo * 1000:.0f} ms"
            f" = {(q + servo) * 1000:.0f} ms capture-to-door"
        )


def _install_signal_handlers(stop: threading.Event):
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signal_handlers(previous) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)
