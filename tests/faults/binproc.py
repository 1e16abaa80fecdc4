"""``wastenet run`` in a process of its own, with faults injected at the engine and hardware
seams only: ``python binproc.py FAULTS_JSON run --model ... [wastenet run options]``.

FAULTS_JSON keys: ``engine`` (FaultyEngine options around the real engine), ``servo``
(ServoPlan options: the simulated ServoKit under the real PCA9685 driver, for
``--actuator pca9685://``), ``kill_at_sample`` (SIGKILL itself halfway through writing
that sample's JPEG), ``ro_images_after`` (after that many samples the store's images/
folder is bind-mounted read-only: needs the private mount namespace ``in_namespace``
gives), ``grace_s`` (the watchdog's stop grace), ``ready`` (a file touched once the
bin's first frame is done). The exit code is the real CLI's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wastenet.accelerate  # noqa: E402
from faults.parts import FaultyEngine, ServoPlan, servokit_factory  # noqa: E402
from wastenet.cli import main  # noqa: E402
from wastenet.runtime import actuators, loop, store, watchdog  # noqa: E402


def inject(faults: dict) -> None:
    if "engine" in faults:
        real_load = wastenet.accelerate.load_engine
        options = faults["engine"]
        wastenet.accelerate.load_engine = lambda path, **kw: FaultyEngine(
            real_load(path, **kw), **options
        )
    if "servo" in faults:
        actuators._servokit_factory = servokit_factory(ServoPlan(**faults["servo"]))
    if "grace_s" in faults:
        watchdog.STOP_GRACE_S = faults["grace_s"]
    if "kill_at_sample" in faults:
        _kill_mid_write(faults["kill_at_sample"])
    if "ro_images_after" in faults:
        _read_only_images_after(faults["ro_images_after"])
    if "ready" in faults:
        _touch_after_first_frame(Path(faults["ready"]))


def _kill_mid_write(n: int) -> None:
    real_write = store.SampleStore._write_file
    count = [0]

    def write(handle, data):
        count[0] += 1
        if count[0] < n:
            return real_write(handle, data)
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)  # the real thing: no handler, no cleanup

    store.SampleStore._write_file = staticmethod(write)


def _read_only_images_after(n: int) -> None:
    real_save = store.SampleStore._save

    def save(self, name, data, record):
        row = real_save(self, name, data, record)
        if self.saved + 1 == n and row is not None:
            images = str(self.images)
            subprocess.run(["mount", "--bind", images, images], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", images, images], check=True)
        return row

    store.SampleStore._save = save


def _touch_after_first_frame(ready: Path) -> None:
    real_step = loop.BinLoop.step

    def step(self):
        result = real_step(self)
        if self.summary.frames == 1:
            ready.touch()
        return result

    loop.BinLoop.step = step


if __name__ == "__main__":
    inject(json.loads(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
