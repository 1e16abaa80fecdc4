"""Door actuators chosen by URI, behind one interface, and the class -> door map.

``open_actuator(uri, doors)`` gives ``pca9685://<bus>/<address>`` (real servos on a
PCA9685 board through adafruit-circuitpython-servokit, the ``servo`` extra),
``sim://`` (models the servo's delay, the paper's measured 0.646 s, and records
every command) or ``log://`` (logs only). All share ``move(channel, angle)``,
``open_door(door, hold_s)``, ``close_door(door)`` and ``tick()``, which closes
doors whose hold time ran out. A driver fault is logged, counted and survived.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

from wastenet.config import from_dict
from wastenet.errors import ConfigError, WasteNetError

log = logging.getLogger(__name__)

PAPER_SERVO_DELAY_S = 0.646  # section 5.6: classification-to-servo delay minus the queue


@dataclass
class DoorSpec:
    channel: int
    open_angle: float = 90.0
    closed_angle: float = 0.0
    min_pulse_us: int = 400  # the paper's servos: 400-2600 us
    max_pulse_us: int = 2600
    actuation_range: float = 180.0


@dataclass
class DoorMap:
    classes: dict[str, int]
    doors: dict[int, DoorSpec]
    hold_s: float = 3.0
    crop_to_object: bool = False  # classify a crop around what the presence gate saw change

    def door_for(self, label: str) -> int | None:
        return self.classes.get(label)


def parse_door_map(data: dict, where: str = "doors") -> DoorMap:
    """Build a DoorMap from its YAML mapping, checking every class points at a real door."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping with 'classes' and 'doors'")
    unknown = set(data) - {"classes", "doors", "hold_s", "crop_to_object"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    raw_doors = data.get("doors") or {}
    if not isinstance(raw_doors, dict) or not raw_doors:
        raise ConfigError(f"{where}: 'doors' must map door numbers to {{channel: N, ...}}")
    try:
        doors = {int(k): from_dict(DoorSpec, v, f"{where}.doors.{k}") for k, v in raw_doors.items()}
    except ValueError as exc:
        raise ConfigError(f"{where}: door ids must be numbers ({exc})") from exc
    classes = data.get("classes") or {}
    if not isinstance(classes, dict):
        raise ConfigError(f"{where}: 'classes' must map class names to door numbers")
    for name, door in classes.items():
        if not isinstance(door, int) or door not in doors:
            raise ConfigError(f"{where}: class {name!r} -> door {door!r}, which is not defined")
    for door_id, spec in doors.items():
        if not 0 <= spec.channel <= 15:
            raise ConfigError(f"{where}: door {door_id} channel {spec.channel} is not 0..15")
        for angle in (spec.open_angle, spec.closed_angle):
            if not 0 <= angle <= spec.actuation_range:
                raise ConfigError(
                    f"{where}: door {door_id} angle {angle} outside 0..{spec.actuation_range}"
                )
    crop = data.get("crop_to_object", False)
    if not isinstance(crop, bool):
        raise ConfigError(f"{where}: crop_to_object must be true or false, not {crop!r}")
    return DoorMap(dict(classes), doors, float(data.get("hold_s", 3.0)), crop)


def load_door_map(path: str | Path | None = None) -> DoorMap:
    """Read a door map YAML; None reads the bundled one (the paper's three doors)."""
    if path is None:
        path = Path(__file__).resolve().parents[1] / "assets" / "doors.yaml"
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read door map ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_door_map(data, str(path))


@dataclass
class Command:
    t: float  # perf_counter when the command was sent
    channel: int
    angle: float
    door: int | None = None
    action: str = "move"  # move | open | close
    arrives_t: float | None = None  # when the servo reaches the angle (modelled or measured)


class Actuator:
    """Door logic shared by every driver; a driver only implements ``_move``."""

    servo_delay_s = 0.0

    def __init__(self, doors: DoorMap, clock: Callable[[], float] = time.perf_counter) -> None:
        self.doors, self.clock = doors, clock
        self.open_until: dict[int, float] = {}
        self.faults = 0
        self.commands: list[Command] = []
        self._lock = threading.Lock()

    def _move(self, channel: int, angle: float) -> None:
        raise NotImplementedError

    def move(
        self, channel: int, angle: float, door: int | None = None, action: str = "move"
    ) -> bool:
        """Send one angle; a driver fault is logged and reported as False, never raised."""
        t = self.clock()
        try:
            self._move(channel, angle)
        except Exception as exc:  # I2C errors surface as OSError, ValueError, RuntimeError...
            self.faults += 1
            log.error("servo channel %d: %s (door command dropped, loop goes on)", channel, exc)
            return False
        self._record(Command(t, channel, angle, door, action, t + self.servo_delay_s))
        return True

    def _record(self, command: Command) -> None:
        with self._lock:
            self.commands.append(command)
            if len(self.commands) > 10_000:  # keep memory flat on long runs
                del self.commands[:5_000]

    def open_door(self, door: int, hold_s: float | None = None) -> bool:
        spec = self._spec(door)
        hold = self.doors.hold_s if hold_s is None else hold_s
        already = door in self.open_until
        self.open_until[door] = self.clock() + hold
        if already:
            return True
        return self.move(spec.channel, spec.open_angle, door, "open")

    def close_door(self, door: int) -> bool:
        spec = self._spec(door)
        self.open_until.pop(door, None)
        return self.move(spec.channel, spec.closed_angle, door, "close")

    def tick(self) -> None:
        """Close every door whose hold time has run out."""
        now = self.clock()
        for door, until in list(self.open_until.items()):
            if now >= until:
                self.close_door(door)

    def close(self) -> None:
        for door in list(self.open_until):
            self.close_door(door)

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
            self._file.write(json.dumps(asdict(command)) + "\n")
            self._file.flush()

    def close(self) -> None:
        super().close()
        if self._file is not None:
            self._file.close()
            self._file = None


class PCA9685Actuator(Actuator):
    """Real servos on a PCA9685 PWM board over I2C (the paper: bus 0, pulses 400-2600 us)."""

    servo_delay_s = PAPER_SERVO_DELAY_S

    def __init__(
        self,
        doors: DoorMap,
        bus: int = 1,
        address: int = 0x40,
        kit_factory: Callable[..., object] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(doors, clock)
        factory = kit_factory or _servokit_factory(bus)
        try:
            self.kit = factory(channels=16, address=address)
        except (OSError, ValueError, RuntimeError) as exc:
            raise WasteNetError(f"PCA9685 on I2C bus {bus} at {address:#x}: {exc}") from exc
        for spec in doors.doors.values():
            servo = self.kit.servo[spec.channel]
            servo.set_pulse_width_range(spec.min_pulse_us, spec.max_pulse_us)
            servo.actuation_range = spec.actuation_range

    def _move(self, channel: int, angle: float) -> None:
        self.kit.servo[channel].angle = angle


def _servokit_factory(bus: int) -> Callable[..., object]:
    try:
        from adafruit_servokit import ServoKit
    except ImportError as exc:
        raise WasteNetError(
            "pca9685:// needs adafruit-circuitpython-servokit: pip install 'wastenet[servo]'"
        ) from exc

    def factory(channels: int, address: int) -> object:
        try:  # a numbered bus (Jetson bus 0) needs adafruit-extended-bus; else the board default
            from adafruit_extended_bus import ExtendedI2C

            return ServoKit(channels=channels, address=address, i2c=ExtendedI2C(bus))
        except ImportError:
            return ServoKit(channels=channels, address=address)

    return factory


@dataclass
class ActuatorSpec:
    kind: str
    options: dict = field(default_factory=dict)


def parse_actuator_uri(uri: str) -> ActuatorSpec:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    if scheme == "pca9685":
        pieces = [p for p in (parts.netloc + parts.path).split("/") if p]
        try:
            bus = int(pieces[0]) if pieces else 1
            address = int(pieces[1], 0) if len(pieces) > 1 else 0x40
        except ValueError as exc:
            raise ConfigError(
                f"{uri}: expected pca9685://<i2c-bus>/<address>, e.g. pca9685://1/0x40"
            ) from exc
        return ActuatorSpec("pca9685", {"bus": bus, "address": address, **options})
    if scheme in ("sim", "log"):
        return ActuatorSpec(scheme, options)
    raise ConfigError(f"{uri}: unknown actuator; use pca9685://<bus>/<address>, sim:// or log://")


def open_actuator(uri: str, doors: DoorMap | None = None, **opts) -> Actuator:
    """Open an actuator by URI: ``sim://?delay=0.646&record=cmds.jsonl``, ``log://``, ``pca9685://0/0x40``."""
    spec = parse_actuator_uri(uri)
    doors = doors or load_door_map()
    o = {**spec.options, **opts}
    if spec.kind == "sim":
        try:
            delay = float(o.pop("delay", PAPER_SERVO_DELAY_S))
        except ValueError as exc:
            raise ConfigError(f"{uri}: delay must be seconds") from exc
        return SimActuator(doors, delay_s=delay, record_path=o.pop("record", None), **o)
    if spec.kind == "log":
        return LogActuator(doors, **o)
    return PCA9685Actuator(doors, **o)
