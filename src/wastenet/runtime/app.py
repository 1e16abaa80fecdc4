"""Assembles a bin from options (source, model, doors, actuator, store, display) and runs it.

``BinOptions`` defaults are the README's main job: the bundled model on the bundled
TrashNet samples, replayed as a camera would see them, with simulated servos.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from wastenet.classes import CONFIDENCE_THRESHOLD
from wastenet.errors import WasteNetError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_MODEL = ASSETS / "model" / "wastenet-lite0.onnx"
DEFAULT_SAMPLES = ASSETS / "samples"
DEFAULT_DOORS = ASSETS / "doors.yaml"
SAMPLE_REPLAY = {"fps": 15, "hold": 15, "gap": 8}  # each sample in view for 1 s, 0.5 s apart


@dataclass
class BinOptions:
    source: str | None = None  # None: the bundled samples, replayed at SAMPLE_REPLAY
    model: str | None = None
    actuator: str = "sim://"
    doors: str | None = None
    vote: int = 10
    threshold: float = CONFIDENCE_THRESHOLD
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


def _missing_model_message(path: Path) -> str:
    return (
        f"{path}: no model there. Train and export one (wastenet train ..., then "
        f"wastenet accelerate export ... --format onnx) and pass it with --model PATH, "
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
    from wastenet.runtime.actuators import load_door_map, open_actuator
    from wastenet.runtime.gate import GateConfig, PresenceGate
    from wastenet.runtime.loop import BinLoop
    from wastenet.runtime.sources import open_source
    from wastenet.runtime.timings import TimingsWriter
    from wastenet.runtime.vote import MajorityVote

    model = Path(opts.model) if opts.model else DEFAULT_MODEL
    if engine is None:
        if not model.exists():
            raise WasteNetError(_missing_model_message(model))
        engine = load_engine(model)
    doors = load_door_map(opts.doors or DEFAULT_DOORS)
    missing = [c for c in engine.meta.labels if c not in doors.classes]
    if missing:
        print_fn(f"note: no door for {', '.join(missing)}; those items stay out")
    try:
        vote = MajorityVote(opts.vote, opts.threshold, opts.min_share)
    except ValueError as exc:
        raise WasteNetError(str(exc)) from exc
    run_dir = Path(opts.run_dir or Path("runs") / "bin" / time.strftime("%Y%m%d-%H%M%S"))
    parts: list = []  # closed in reverse order, whatever happens
    stop = stop or threading.Event()
    previous = _install_signal_handlers(stop)
    try:
        source = (
            open_source(str(DEFAULT_SAMPLES), **SAMPLE_REPLAY)
            if opts.source is None
            else open_source(opts.source)
        )
        parts.append(source)
        actuator = open_actuator(opts.actuator, doors)
        parts.append(actuator)
        writer = TimingsWriter(run_dir)
        parts.append(writer)
        hooks = _display_hooks(opts, actuator, parts)
        if opts.store:
            hooks.append(("store", _store_hook(opts, engine, parts)))
        hooks.append(
            (
                "record",
                lambda r: writer.frame(
                    r.frame.index, r.frame.t_capture, r.present, r.label, r.times
                ),
            )
        )

        def announce(act) -> None:
            writer.actuation({**asdict(act), "queue_s": act.queue_s})
            where = f"door {act.door}" if act.door is not None else "no door"
            status = "opened" if act.ok else "FAILED (driver fault)"
            print_fn(
                f"frame {act.frame_index:5d}: {act.label:<9s} -> {where} {status}"
                f" (queue {act.queue_s * 1000:.0f} ms + servo {act.servo_delay_s * 1000:.0f} ms)"
            )

        gate = PresenceGate(GateConfig(threshold=opts.gate_threshold)) if opts.gate else None
        crop = doors.crop_to_object if opts.crop_to_object is None else opts.crop_to_object
        loop = BinLoop(
            source, engine, vote, actuator, doors, gate, hooks, [announce], crop_to_object=crop
        )
        summary = loop.run(opts.max_frames, stop)
        writer.write_json(
            "run.json",
            {"config": asdict(opts), "model": str(model), "summary": _summary_dict(summary)},
        )
    finally:
        for part in reversed(parts):
            part.close()
        _restore_signal_handlers(previous)
    print_summary(summary, opts.vote, print_fn)
    print_fn(f"run folder: {run_dir} (wastenet latency --run {run_dir})")
    return summary


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
            list(actuator.open_until),
        )
        for output in outputs:
            output(bgr)

    return [("display", show)]


def _store_hook(opts: BinOptions, engine, parts: list):
    from wastenet.runtime.store import SamplePolicy, SampleStore

    quota = int(opts.store_quota_mb * 1e6) if opts.store_quota_mb else None
    version = (
        f"{engine.meta.architecture}@{(engine.meta.source_hash or '')[:12]} {engine.meta.created}"
    )
    store = SampleStore(
        opts.store, SamplePolicy.parse(opts.store_policy, opts.threshold), quota, version.strip()
    )
    parts.append(store)

    def keep(result) -> None:
        if result.probs is not None:
            decided = result.vote.label if result.vote else None
            try:
                store.offer(
                    result.frame.image, result.label, result.probs, decided, result.frame.index
                )
            except (
                OSError,
                sqlite3.Error,
                WasteNetError,
            ) as exc:  # a full disk must not stop the bin
                log.error("sample store: %s (sample dropped, bin goes on)", exc)

    return keep


def _summary_dict(summary) -> dict:
    return {
        "frames": summary.frames,
        "inferred": summary.inferred,
        "elapsed_s": summary.elapsed_s,
        "fps": summary.fps,
        "ips": summary.ips,
        "actuations": summary.decisions,
        "stages": summary.stages.summary(),
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
