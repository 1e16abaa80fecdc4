"""A running bin takes a new model when its model folder changes: no restart, no re-homing.

``wastenet update pull`` installs a release by swapping the bin folder's ``current`` link
to the new version's folder (``runtime.update_pull``), after checking its signature,
hashes and the engine this bin runs on sample images. ``wastenet run --model BIN/current``
watches that link: every ``every_s`` seconds, between items, it reads where the link
points, and where that changed it loads the new folder's fastest verified engine, and the
loop (``runtime.loop``) runs it from the next frame on.

Loading happens in the loop, while nothing is in view (an OpenVINO engine compiles in
about a second on the bin's CPU; an item that arrives meanwhile waits in the camera's
buffer). A folder whose engine does not load, or whose model sorts other classes than the
door map was checked against, is refused: the bin goes on with the model it has and says
why. Every look that found a change is recorded (``swaps``, in the run's ``run.json``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wastenet.errors import WasteNetError

if TYPE_CHECKING:
    from wastenet.accelerate import Engine

log = logging.getLogger(__name__)

EVERY_S = 2.0  # how often the link is read: a readlink, cheap beside a frame


class ModelWatch:
    """Called by the loop between items: the engine of the folder ``folder`` now names,
    once, where it names another than before; else None."""

    def __init__(
        self,
        folder: str | Path,
        load: Callable[[Path], Engine],
        labels: Sequence[str],
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
        print_fn: Callable[[str], None] = print,
    ) -> None:
        self.folder, self.load, self.labels = Path(folder), load, list(labels)
        self.every_s, self.clock, self.print_fn = every_s, clock, print_fn
        self.target = self.folder.resolve()
        self._next = clock() + every_s
        self.swaps: list[dict[str, Any]] = []

    def __call__(self) -> Engine | None:
        now = self.clock()
        if now < self._next:
            return None
        self._next = now + self.every_s
        try:
            target = self.folder.resolve(strict=True)
        except OSError:  # the link is being replaced, or gone: look again later
            return None
        if target == self.target:
            return None
        previous, self.target = self.target, target
        record: dict[str, Any] = {"time": time.time(), "from": str(previous), "to": str(target)}
        self.swaps.append(record)
        try:
            engine = self._load(target)
        except Exception as exc:  # noqa: BLE001 -- whatever a model does, the bin goes on
            record.update(taken=False, error=f"{type(exc).__name__}: {exc}")
            log.error("model update %s refused: %s", target, exc)
            self.print_fn(
                f"model update: {target.name} refused ({exc}); the bin goes on with {previous.name}"
            )
            return None
        record.update(taken=True, engine=engine.path.name if engine.path else None)
        self.print_fn(f"model update: {previous.name} -> {target.name} ({record['engine']})")
        return engine

    def _load(self, target: Path) -> Engine:
        engine = self.load(target)
        labels = list(engine.meta.labels)
        if labels != self.labels:
            engine.close()
            raise WasteNetError(
                f"it sorts {', '.join(labels)}, not {', '.join(self.labels)} as the door map "
                "was checked for: restart the bin with a door map for its classes"
            )
        return engine
