"""The bin's loop, read top to bottom: source -> gate -> preprocess -> engine -> vote -> door.

Everything else (window, MJPEG stream, sample store, timing files, printing) is a
hook called with each frame's ``FrameResult`` or an event listener called with
each ``Actuation``; the loop times every stage, hooks included, and marks the stage
it is in (``stage``) for the bin's watchdog (``runtime.watchdog``).

A ``model_watch`` (``runtime.model_watch``) is asked between items (nothing in view, or
every frame where there is no presence gate) for a new engine: a model folder that
``wastenet update pull`` swapped. The loop takes it from the next frame on, with a fresh
vote, and tells its ``on_swap`` listeners.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from wastenet.classes import NOT_SURE
from wastenet.preprocess import object_window, preprocess
from wastenet.runtime.actuators import Actuator
from wastenet.runtime.doors import DoorMap
from wastenet.runtime.events import Actuation, FrameResult, RunSummary
from wastenet.runtime.gate import PresenceGate
from wastenet.runtime.sources import FrameSource
from wastenet.runtime.vote import MajorityVote
from wastenet.sureness import NotSureRule

if TYPE_CHECKING:
    from wastenet.accelerate import Engine


Hook = tuple[str, Callable[[FrameResult], None]]


class BinLoop:
    def __init__(
        self,
        source: FrameSource,
        engine: Engine,  # anything with .meta and .predict(batch) -> probabilities
        vote: MajorityVote,
        actuator: Actuator,
        doors: DoorMap,
        gate: PresenceGate | None = None,
        hooks: Sequence[Hook] = (),
        listeners: Sequence[Callable[[Actuation], None]] = (),
        clock: Callable[[], float] = time.perf_counter,
        crop_to_object: bool = False,
        crop_margin: float = 0.15,
        model_watch: Callable[[], Engine | None] | None = None,
        on_swap: Sequence[Callable[[Engine], None]] = (),
    ) -> None:
        self.source, self.engine, self.vote, self.gate = source, engine, vote, gate
        self.crop_to_object, self.crop_margin = crop_to_object and gate is not None, crop_margin
        self.actuator, self.doors = actuator, doors
        self.hooks, self.listeners, self.clock = list(hooks), list(listeners), clock
        self.model_watch, self.on_swap = model_watch, list(on_swap)
        self._use(engine)
        self.summary = RunSummary()
        self._fps = 0.0
        self._last_t: float | None = None
        self._last_present_t: float | None = None
        # the stage being run and time.monotonic() at its start, read by the watchdog thread
        self.stage: tuple[str, float] | None = None
        self.started_t: float | None = None

    def _use(self, engine: Engine) -> None:
        meta = engine.meta
        self.engine = engine
        self.size_hw, self.mean, self.std, self.labels = (
            (meta.height, meta.width),
            meta.mean,
            meta.std,
            meta.labels,
        )
        self._sureness = NotSureRule.of(meta).sureness  # what the vote's threshold reads
        self._aspect = max(self.size_hw) / min(self.size_hw)  # the object crop's (landscape)

    def _mark(self, name: str) -> None:
        self.stage = (name, time.monotonic())

    def _between_items(self) -> None:
        """Take a new engine from the model watch, if it has one."""
        if self.gate is not None and self._last_present_t is not None:
            return  # an item is in view: its vote finishes on the engine it started with
        self._mark("model watch")
        engine = self.model_watch()
        if engine is None:
            return
        self._use(engine)
        self.vote.reset()
        for listener in self.on_swap:
            listener(engine)

    def step(self) -> FrameResult | None:
        """Process one frame; None when the source has ended."""
        clock, times, mark = self.clock, {}, self._mark
        if self.model_watch is not None:
            self._between_items()
        mark("capture")
        t = clock()
        frame = self.source.read()
        times["capture"] = clock() - t
        if frame is None:
            return None
        mark("gate")
        t = clock()
        present = self.gate.update(frame.image) if self.gate is not None else True
        times["gate"] = clock() - t
        result = FrameResult(frame, present, times, fps=self._tick_fps(frame.t_capture))
        if present and self._last_present_t is not None:
            self.summary.inference_gaps.append(frame.t_capture - self._last_present_t)
        self._last_present_t = frame.t_capture if present else None
        if present:
            mark("preprocess")
            t = clock()
            batch = preprocess(self._view(result), self.size_hw, self.mean, self.std)
            times["preprocess"] = clock() - t
            mark("inference")
            t = clock()
            result.probs = np.asarray(self.engine.predict(batch))[0]
            times["inference"] = clock() - t
            mark("vote")
            t = clock()
            top = int(np.argmax(result.probs))
            result.confidence = float(self._sureness(result.probs))
            result.label = self.vote.entry(self.labels[top], result.confidence)
            result.vote = self.vote.add(self.labels[top], result.confidence, frame.t_capture)
            times["vote"] = clock() - t
        else:
            self.vote.reset()  # nothing in view: the next item starts a fresh vote
        mark("actuate")
        t = clock()
        self._actuate(result)
        times["actuate"] = clock() - t
        for name, hook in self.hooks:
            mark(name)
            t = clock()
            hook(result)
            times[name] = clock() - t
        self.summary.frames += 1
        self.summary.inferred += int(present)
        self.summary.stages.add(times)
        return result

    def _view(self, result: FrameResult) -> np.ndarray:
        """What the model sees: the frame, or the crop around what changed in it."""
        image = result.frame.image
        if not self.crop_to_object:
            return image
        h, w = image.shape[:2]
        box = self.gate.object_box(w, h)
        if box is None:
            return image
        result.crop_box = object_window(box, w, h, self.crop_margin, self._aspect)
        x0, y0, x1, y1 = result.crop_box
        return image[y0:y1, x0:x1]

    def _actuate(self, result: FrameResult) -> None:
        self.actuator.tick()
        vote = result.vote
        if vote is None or not vote.changed or vote.label in (None, NOT_SURE):
            return
        door = self.doors.door_for(vote.label)
        ok = self.actuator.open_door(door) if door is not None else False
        event = Actuation(
            result.frame.index,
            vote.label,
            door,
            vote.onset_t or result.frame.t_capture,
            result.frame.t_capture,
            self.clock(),
            self.actuator.servo_delay_s,
            ok,
        )
        self.summary.actuations.append(event)
        self.summary.decisions += 1
        for listener in self.listeners:
            listener(event)

    def _tick_fps(self, t: float) -> float:
        if self._last_t is not None and t > self._last_t:
            self._fps = (
                0.9 * self._fps + 0.1 / (t - self._last_t) if self._fps else 1 / (t - self._last_t)
            )
        self._last_t = t
        return self._fps

    def run(self, max_frames: int | None = None, stop: threading.Event | None = None) -> RunSummary:
        """Run until the source ends, ``max_frames`` frames, or ``stop`` is set.

        Doors close on the actuator's wall-clock timer, not only between frames: a
        stalled camera cannot hold a door open. A source that gave up (a camera lost
        for good) is recorded in ``summary.source_lost``.
        """
        start = self.started_t = self.clock()
        timer_started = self.actuator.start_timer()  # run_bin starts it before the loop
        try:
            while not (stop and stop.is_set()):
                if max_frames is not None and self.summary.frames >= max_frames:
                    break
                if self.step() is None:
                    self.summary.source_lost = getattr(self.source, "lost", None)
                    break
        finally:
            if timer_started:
                self.actuator.stop_timer()
            self.summary.elapsed_s = self.clock() - start
        return self.summary
