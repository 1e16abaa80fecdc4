"""Door actuators chosen by URI, behind one interface (the class -> door map: doors.py).

``open_actuator(uri, doors)`` gives ``pca9685://<bus>/<address>`` (real servos on a
PCA9685 board through adafruit-circuitpython-servokit, the ``servo`` extra; a bus
number needs adafruit-extended-bus, ``pca9685://`` is the board's default bus),
``sim://`` (models the servo's delay, the paper's measured 0.646 s, and records
every command) or ``log://`` (logs only). All share ``move(channel, angle)``,
``open_door(door, hold_s)``, ``close_door(door)`` and ``tick()``, which closes
doors whose hold time ran out; ``start_timer()`` ticks on the wall clock in a thread
of its own, so a door closes on time whether frames come or not (the bin starts it).
A driver fault is logged (once per burst), counted and survived; a close the driver
refused is tried again every ``CLOSE_RETRY_S`` until one goes through, so a passing
I2C error cannot leave a door open. ``home()`` closes every door (the bin does at
start: a door left open by a killed run closes before the first frame).
Each scheme takes only its own query options (``ACTUATOR_OPTIONS``), checked.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from wastenet.errors import ConfigError, WasteNetError
from wastenet.runtime.doors import DoorMap, DoorSpec, load_door_map
from wastenet.runtime.uri import check_options, real, text

log = logging.getLogger(__name__)

PAPER_SERVO_DELAY_S = 0.646  # section 5.6: classification-to-servo delay minus the queue
TIMER_PERIOD_S = 0.1  # the door timer's tick: a door closes at most this late
CLOSE_RETRY_S = 0.2  # a close the driver refused is sent again this often
CLOSE_GIVE_UP_S = 1.0  # at shutdown, how long refused closes are retried


@dataclass
class Command:
    t: float  # perf_counter when the command was sent
    channel: int
    angle: float
    door: int | None = None
    action: str = "move"  # move | open | close
    arrives_t: float | None = None  # when the servo reaches the angle (modelled or measured)


class Actuator:
    """Door logic shared by every driver; a driver only implements ``_move``.

    Door state and servo moves are under one lock: the loop and the door timer both
    open and close doors.
    """

    servo_delay_s = 0.0

    def __init__(self, doors: DoorMap, clock: Callable[[], float] = time.perf_counter) -> None:
        self.doors, self.clock = doors, clock
        self.open_until: dict[int, float] = {}  # doors that may be open -> when to close them
        self._opened: set[int] = set()  # doors whose open command went through
        self.faults = 0
        self._failing = 0  # driver faults since the last command that went through
        self.commands: list[Command] = []
        self._lock = threading.RLock()
        self._timer: threading.Thread | None = None
        self._timer_stop = threading.Event()

    def _move(self, channel: int, angle: float) -> None:
        raise NotImplementedError

    def move(
        self, channel: int, angle: float, door: int | None = None, action: str = "move"
    ) -> bool:
        """Send one angle; a driver fault is logged and reported as False, never raised."""
        with self._lock:
            t = self.clock()
            try:
                self._move(channel, angle)
            except Exception as exc:  # I2C errors surface as OSError, ValueError, RuntimeError...
                self.faults += 1
                self._failing += 1
                if self._failing == 1:
                    log.error(
                        "servo channel %d: %s (%s command dropped, loop goes on; further "
                        "faults are counted until a command goes through)",
                        channel,
                        exc,
                        action,
                    )
                return False
            if self._failing:
                log.warning("servo: commands go through again after %d faults", self._failing)
                self._failing = 0
            self._record(Command(t, channel, angle, door, action, t + self.servo_delay_s))
            return True

    def _record(self, command: Command) -> None:
        with self._lock:
            self.commands.append(command)
            if len(self.commands) > 10_000:  # keep memory flat on long runs
                del self.commands[:5_000]

    def open_door(self, door: int, hold_s: float | None = None) -> bool:
        """Open ``door`` (or keep it open) for ``hold_s``; False when the driver refused.

        From the moment it is asked the door counts as possibly open: it is closed
        when the hold runs out even if the open command failed halfway.
        """
        spec = self._spec(door)
        hold = self.doors.hold_s if hold_s is None else hold_s
        with self._lock:
            self.open_until[door] = self.clock() + hold
            if door in self._opened:
                return True
            ok = self.move(spec.channel, spec.open_angle, door, "open")
            if ok:
                self._opened.add(door)
            return ok

    def close_door(self, door: int, action: str = "close") -> bool:
        """Close ``door``; when the driver refuses, it stays due and is tried again after
        ``CLOSE_RETRY_S`` (by ``tick()``), never forgotten while it may be open."""
        spec = self._spec(door)
        with self._lock:
            if self.move(spec.channel, spec.closed_angle, door, action):
                self.open_until.pop(door, None)
                self._opened.discard(door)
                return True
            if door in self.open_until or door in self._opened:
                self.open_until[door] = self.clock() + CLOSE_RETRY_S
            return False

    def home(self) -> bool:
        """Close every door of the map, open or not (a known state at start-up); a door the
        driver refuses stays due for a retry. True when every command went through."""
        with self._lock:
            for door in self.doors.doors:
                self.open_until.setdefault(door, self.clock())
            return all([self.close_door(door, "home") for door in self.doors.doors])

    def emergency_close(self, timeout_s: float = 1.0) -> bool:
        """Close the doors that may be open, from any thread, if the driver's lock can be had
        within ``timeout_s`` (a driver stuck mid-command holds it); False when not all closed."""
        if not self._lock.acquire(timeout=timeout_s):
            return False
        try:
            return all([self.close_door(door) for door in list(self.open_until)])
        finally:
            self._lock.release()

    def open_doors(self) -> list[int]:
        """The doors open now (a snapshot another thread may be changing)."""
        with self._lock:
            return list(self.open_until)

    def tick(self) -> None:
        """Close every door whose hold time has run out."""
        with self._lock:
            now = self.clock()
            for door, until in list(self.open_until.items()):
                if now >= until:
                    self.close_door(door)

    def start_timer(self, period_s: float = TIMER_PERIOD_S) -> bool:
        """Tick every ``period_s`` on a thread of its own, frames or not; False if already on.

        With it no door stays open longer than its hold time plus ``period_s``, even
        while the camera is stalled or reconnecting. ``close()`` stops it.
        """
        with self._lock:
            if self._timer is not None:
                return False
            self._timer_stop = threading.Event()
            self._timer = threading.Thread(
                target=self._run_timer,
                args=(period_s, self._timer_stop),
                name="door-timer",
                daemon=True,
            )
            self._timer.start()
            return True

    def _run_timer(self, period_s: float, stop: threading.Event) -> None:
        while not stop.wait(period_s):
            try:
                self.tick()
            except Exception as exc:  # the timer must outlive any one bad tick
                log.error("door timer: %s", exc)

    def stop_timer(self) -> None:
        with self._lock:
            timer, self._timer = self._timer, None
            self._timer_stop.set()
        if timer is not None and timer is not threading.current_thread():
            timer.join(timeout=2.0)

    def close(self) -> None:
        """Stop the timer and close every door that may be open; a close the driver refuses
        is tried again for ``CLOSE_GIVE_UP_S`` before the door is reported as maybe open."""
        self.stop_timer()
        deadline = time.monotonic() + CLOSE_GIVE_UP_S
        while True:
            with self._lock:
                for door in list(self.open_until):
                    self.close_door(door)
                left = sorted(self.open_until)
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(CLOSE_RETRY_S)
        if left:
            log.error("doors %s may be open: the servo driver refused every close", left)

    def _spec(self, door: int) -> DoorSpec:
        try:
            return self.doors.doors[door]
        except KeyError as exc:
            raise WasteNetError(f"door {door} is not in the door map") from exc


class LogActuator(Actuator):
    def _move(self, channel: int, angle: float) -> None:
        log.info("servo channel %d -> %.0f deg", channel, angle)


class SimActuator(Actuator):
    """Simulated servos: each command is recorded with its send time and modelled arrival."""

    def __init__(
        self,
        doors: DoorMap,
        delay_s: float = PAPER_SERVO_DELAY_S,
        record_path: str | Path | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(doors, clock)
        self.servo_delay_s = float(delay_s)
        self.angles: dict[int, float] = {}
        self._file = open(record_path, "a", encoding="utf-8") if record_path else None  # noqa: SIM115

    def _move(self, channel: int, angle: float) -> None:
        self.angles[channel] = angle

    def _record(self, command: Command) -> None:
        super()._record(command)
        if self._file is not None:
            try:
                self._file.write(json.dumps(asdict(command)) + "\n")
                self._file.flush()
            except OSError as exc:  # a full disk stops the record, not the doors
                log.warning("servo record %s: %s; recording stops", self._file.name, exc)
                with contextlib.suppress(OSError):
                    self._file.close()
                self._file = None

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None


class PCA9685Actuator(Actuator):
    """Real servos on a PCA9685 PWM board over I2C (the paper: bus 0, pulses 400-2600 us).

    ``bus=None`` is the board's default I2C bus (Blinka's ``board.I2C()``); a numbered
    bus needs adafruit-extended-bus.
    """

    servo_delay_s = PAPER_SERVO_DELAY_S

    def __init__(
        self,
        doors: DoorMap,
        bus: int | None = None,
        address: int = 0x40,
        kit_factory: Callable[..., object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(doors, clock)
        where = f"PCA9685 at {address:#x} on " + (
            "the board's default I2C bus" if bus is None else f"I2C bus {bus}"
        )
        factory = kit_factory or _servokit_factory(bus)
        try:
            self.kit = factory(channels=16, address=address)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WasteNetError(f"{where}: {exc} (is I2C enabled and the board wired?)") from exc
        except (AttributeError, NotImplementedError, ImportError) as exc:
            # Blinka's `board` on a machine it does not know has no I2C pins (board.SCL...)
            raise WasteNetError(
                f"{where}: this machine has no I2C bus that Adafruit Blinka knows ({exc}); "
                "run the bin on the board wired to the servos, or use --actuator sim://"
            ) from exc
        for spec in doors.doors.values():
            servo = self.kit.servo[spec.channel]
            servo.set_pulse_width_range(spec.min_pulse_us, spec.max_pulse_us)
            servo.actuation_range = spec.actuation_range

    def _move(self, channel: int, angle: float) -> None:
        self.kit.servo[channel].angle = angle


def _servokit_factory(bus: int | None) -> Callable[..., object]:
    try:
        from adafruit_servokit import ServoKit
    except ImportError as exc:
        raise WasteNetError(
            "pca9685:// needs adafruit-circuitpython-servokit: pip install 'wastenet[servo]'"
        ) from exc
    if bus is None:
        return lambda channels, address: ServoKit(channels=channels, address=address)
    try:  # a numbered bus (the paper's Jetson bus 0) is opened by adafruit-extended-bus
        from adafruit_extended_bus import ExtendedI2C
    except ImportError as exc:
        raise WasteNetError(
            f"pca9685://{bus}/...: a numbered I2C bus ({bus}) needs the adafruit-extended-bus "
            "package: pip install adafruit-extended-bus (without it only the board's default "
            "bus is reachable, as pca9685:// or pca9685:///0x40 with no bus number)"
        ) from exc

    def factory(channels: int, address: int) -> object:
        return ServoKit(channels=channels, address=address, i2c=ExtendedI2C(bus))

    return factory


@dataclass
class ActuatorSpec:
    kind: str
    options: dict = field(default_factory=dict)


ACTUATOR_OPTIONS = {  # what each scheme's query may hold, and each value's rule
    "sim": {"delay": real(0, note=" (seconds)"), "record": text},
    "log": {},
    "pca9685": {},
}
PCA9685_FORM = "pca9685://<i2c-bus>/<address>, e.g. pca9685://1/0x40 (pca9685:// = default bus)"


def parse_actuator_uri(uri: str) -> ActuatorSpec:
    """``sim://?delay=S&record=F``, ``log://`` or ``pca9685://[BUS][/ADDRESS]``, checked."""
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in ACTUATOR_OPTIONS:
        raise ConfigError(
            f"{uri}: unknown actuator; use pca9685://<bus>/<address>, sim:// or log://"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    options = check_options(query, ACTUATOR_OPTIONS[scheme], uri, ConfigError)
    if scheme == "pca9685":
        return ActuatorSpec("pca9685", _pca9685_target(uri, parts.netloc, parts.path))
    if (parts.netloc + parts.path).strip("/"):
        raise ConfigError(f"{uri}: {scheme}:// takes options only, as in sim://?delay=0.646")
    return ActuatorSpec(scheme, options)


def _pca9685_target(uri: str, netloc: str, path: str) -> dict:
    """The bus (None: the board's default) and the 7-bit I2C address of a PCA9685 URI."""
    pieces = [p for p in path.split("/") if p]
    try:
        bus = int(netloc, 10) if netloc else None
        address = int(pieces[0], 0) if pieces else 0x40
    except ValueError as exc:
        raise ConfigError(f"{uri}: expected {PCA9685_FORM}") from exc
    if len(pieces) > 1 or (bus is not None and bus < 0):
        raise ConfigError(f"{uri}: expected {PCA9685_FORM}")
    if not 0x03 <= address <= 0x77:
        raise ConfigError(f"{uri}: I2C address {address:#x} is outside 0x03..0x77")
    return {"bus": bus, "address": address}


def open_actuator(
    uri: str,
    doors: DoorMap | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
    kit_factory: Callable[..., object] | None = None,
) -> Actuator:
    """Open an actuator by URI: ``sim://?delay=0.646&record=cmds.jsonl``, ``log://``, ``pca9685://0/0x40``.

    ``clock`` and ``kit_factory`` (a ServoKit stand-in) are for tests and benchmarks.
    """
    spec = parse_actuator_uri(uri)
    doors = doors or load_door_map()
    o = spec.options
    if spec.kind == "sim":
        record = o.get("record")
        try:
            return SimActuator(doors, o.get("delay", PAPER_SERVO_DELAY_S), record, clock)
        except OSError as exc:
            raise ConfigError(
                f"{uri}: cannot write the record file {record} ({exc.strerror or exc})"
            ) from exc
    if spec.kind == "log":
        return LogActuator(doors, clock)
    return PCA9685Actuator(doors, o["bus"], o["address"], kit_factory, clock)
