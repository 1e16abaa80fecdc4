"""Door actuators through one interface: sim://, log://, pca9685:// (fake ServoKit, no I2C here)."""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import types

import pytest

from wastenet.errors import ConfigError, WasteNetError
from wastenet.runtime.actuators import (
    PAPER_SERVO_DELAY_S,
    PCA9685Actuator,
    SimActuator,
    open_actuator,
    parse_actuator_uri,
)
from wastenet.runtime.doors import check_door_classes, load_door_map, parse_door_map


class FakeServo:
    def __init__(self, log, channel):
        self.log, self.channel = log, channel
        self.pulse_range = None
        self.actuation_range = 180
        self._angle = None

    def set_pulse_width_range(self, lo, hi):
        self.pulse_range = (lo, hi)

    @property
    def angle(self):
        return self._angle

    @angle.setter
    def angle(self, value):
        if self.log.get("fail"):
            raise OSError(121, "Remote I/O error")
        self._angle = value
        self.log.setdefault("moves", []).append((self.channel, value))


class FakeServoKit:
    """Same surface as adafruit_servokit.ServoKit: ``kit.servo[ch].angle = deg``."""

    def __init__(self, channels, address, log):
        self.address = address
        self.servo = [FakeServo(log, ch) for ch in range(channels)]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def doors():
    return load_door_map()


def make(kind, doors, clock, tmp_path, log):
    if kind == "sim":
        return open_actuator(f"sim://?record={tmp_path / 'cmds.jsonl'}", doors, clock=clock)
    if kind == "log":
        return open_actuator("log://", doors, clock=clock)
    kit = lambda channels, address: FakeServoKit(channels, address, log)  # noqa: E731
    return open_actuator("pca9685://0/0x41", doors, kit_factory=kit, clock=clock)


def test_bundled_door_map_is_the_papers(doors):
    assert {c: doors.door_for(c) for c in ("cardboard", "glass", "metal", "paper", "plastic")} == {
        "cardboard": 0,
        "glass": 1,
        "metal": 2,
        "paper": 0,
        "plastic": 2,
    }
    assert {d.min_pulse_us for d in doors.doors.values()} == {400}
    assert {d.max_pulse_us for d in doors.doors.values()} == {2600}


@pytest.mark.parametrize("kind", ["sim", "log", "pca9685"])
def test_each_actuator_opens_holds_and_closes_doors(kind, doors, tmp_path):
    clock, log = Clock(), {}
    act = make(kind, doors, clock, tmp_path, log)
    assert act.open_door(2, hold_s=1.0)
    assert act.open_door(2, hold_s=1.0)  # shared door (metal, plastic) already open: no new move
    assert [(c.channel, c.angle, c.action) for c in act.commands] == [(2, 90, "open")]
    clock.t += 0.5
    act.tick()
    assert list(act.open_until) == [2]
    clock.t += 1.0
    act.tick()
    assert act.open_until == {}
    assert [(c.channel, c.angle, c.action) for c in act.commands] == [
        (2, 90, "open"),
        (2, 0, "close"),
    ]
    assert act.commands[0].t == 100.0
    act.open_door(0)
    act.close()  # shutdown closes whatever is open
    assert act.commands[-1].action == "close" and act.commands[-1].channel == 0
    if kind == "pca9685":
        assert log["moves"] == [(2, 90), (2, 0), (0, 90), (0, 0)]
        assert act.kit.address == 0x41
        assert act.kit.servo[1].pulse_range == (400, 2600)


def test_sim_models_servo_delay_and_records_jsonl(doors, tmp_path):
    clock = Clock()
    act = SimActuator(doors, record_path=tmp_path / "cmds.jsonl", clock=clock)
    act.open_door(1)
    assert act.servo_delay_s == PAPER_SERVO_DELAY_S == 0.646
    assert act.commands[0].arrives_t == pytest.approx(100.646)
    assert act.angles == {1: 90}
    act.close()
    lines = [json.loads(line) for line in (tmp_path / "cmds.jsonl").read_text().splitlines()]
    assert [(x["channel"], x["angle"], x["action"]) for x in lines] == [
        (1, 90, "open"),
        (1, 0, "close"),
    ]
    assert open_actuator("sim://?delay=0.2", doors).servo_delay_s == 0.2


def test_driver_fault_is_logged_and_survived(doors, tmp_path, caplog):
    log = {"fail": True}
    act = make("pca9685", doors, Clock(), tmp_path, log)
    with caplog.at_level(logging.ERROR):
        assert act.open_door(0) is False
    assert act.faults == 1 and "Remote I/O error" in caplog.text
    log["fail"] = False
    act.open_until.clear()
    assert act.open_door(0) is True


def test_pca9685_without_servokit_says_how_to_install(doors):
    if importlib.util.find_spec("adafruit_servokit") is not None:
        pytest.skip("servokit is installed here")
    with pytest.raises(WasteNetError, match="servo"):
        PCA9685Actuator(doors)


def test_actuator_uris():
    spec = parse_actuator_uri("pca9685://0/0x40")
    assert spec.kind == "pca9685" and spec.options == {"bus": 0, "address": 0x40}
    assert parse_actuator_uri("pca9685://").options == {"bus": None, "address": 0x40}
    assert parse_actuator_uri("pca9685:///0x41").options == {"bus": None, "address": 0x41}
    assert parse_actuator_uri("sim://?delay=0&record=x.jsonl").options == {
        "delay": 0.0,
        "record": "x.jsonl",
    }
    assert parse_actuator_uri("sim://").kind == "sim"
    with pytest.raises(ConfigError, match="unknown actuator"):
        parse_actuator_uri("gpio://4")
    with pytest.raises(ConfigError, match="pca9685://"):
        parse_actuator_uri("pca9685://zero/xx")


def test_door_map_validation(tmp_path):
    good = {"doors": {0: {"channel": 3}}, "classes": {"glass": 0}}
    assert parse_door_map(good).doors[0].channel == 3
    with pytest.raises(ConfigError, match="not defined"):
        parse_door_map({"doors": {0: {"channel": 3}}, "classes": {"glass": 4}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_door_map({**good, "speed": 3})
    with pytest.raises(ConfigError, match="0..15"):
        parse_door_map({"doors": {0: {"channel": 16}}, "classes": {}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_door_map({"doors": {0: {"channel": 1, "colour": "red"}}, "classes": {}})
    bad = tmp_path / "doors.yaml"
    bad.write_text("doors: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_door_map(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_door_map(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "uri, message",
    [
        ("sim://?foo=1", r"unknown option\(s\) foo; it takes delay, record"),
        ("log://?x=1", r"unknown option\(s\) x; it takes no options"),
        ("sim://?clock=5", r"unknown option\(s\) clock"),  # a keyword for tests, not the URI
        ("pca9685://1/0x40?delay=1", r"unknown option\(s\) delay"),
        ("sim://?delay=abc", "delay='abc' must be a finite number >= 0"),
        ("sim://?delay=-0.5", "delay='-0.5' must be a finite number >= 0"),
        ("sim://?delay=nan", "delay='nan' must be a finite number"),
        ("sim://?delay=inf", "delay='inf' must be a finite number"),
        ("sim://?record=", "record='' must be a non-empty text"),
        ("sim://cmds.jsonl", "takes options only"),
        ("pca9685://1/0x90", "0x90 is outside 0x03..0x77"),
        ("pca9685://1/0x40/7", "expected pca9685://"),
        ("pca9685://-1/0x40", "expected pca9685://"),
    ],
)
def test_bad_actuator_uris_are_named(uri, message, doors):
    with pytest.raises(ConfigError, match=message):
        open_actuator(uri, doors)


def test_sim_record_file_that_cannot_be_written(doors, tmp_path):
    with pytest.raises(ConfigError, match="cannot write the record file"):
        open_actuator(f"sim://?record={tmp_path / 'missing' / 'cmds.jsonl'}", doors)


class FakeI2CLibraries:
    """adafruit_servokit (and optionally adafruit_extended_bus) on a machine without I2C.

    Like Blinka on a PC: ``ServoKit()`` with no bus looks up ``board.I2C``, which a board
    without I2C pins lacks (AttributeError); ``ExtendedI2C(n)`` opens /dev/i2c-n.
    """

    def __init__(self, monkeypatch, extended_bus: bool, buses: tuple[int, ...] = ()):
        self.log, self.opened = {}, []
        servokit = types.ModuleType("adafruit_servokit")
        servokit.ServoKit = self.servokit
        monkeypatch.setitem(sys.modules, "adafruit_servokit", servokit)
        ext = None  # None in sys.modules: `import adafruit_extended_bus` raises ImportError
        if extended_bus:
            ext = types.ModuleType("adafruit_extended_bus")
            ext.ExtendedI2C = lambda bus: self.extended_i2c(bus, buses)
        monkeypatch.setitem(sys.modules, "adafruit_extended_bus", ext)

    def extended_i2c(self, bus, buses):
        if bus not in buses:
            raise FileNotFoundError(2, "No such file or directory", f"/dev/i2c-{bus}")
        self.opened.append(bus)
        return f"i2c-{bus}"

    def servokit(self, channels, address, i2c=None):
        if i2c is None:
            raise AttributeError("module 'board' has no attribute 'I2C'")
        return FakeServoKit(channels, address, self.log)


def test_numbered_bus_without_extended_bus_names_the_package(doors, monkeypatch):
    FakeI2CLibraries(monkeypatch, extended_bus=False)
    with pytest.raises(WasteNetError, match=r"I2C bus \(1\) needs the adafruit-extended-bus"):
        open_actuator("pca9685://1/0x40", doors)  # before: silently the board's default bus


def test_no_i2c_on_this_machine_is_a_clear_error(doors, monkeypatch):
    FakeI2CLibraries(monkeypatch, extended_bus=True, buses=(0,))
    with pytest.raises(WasteNetError, match="default I2C bus: this machine has no I2C bus"):
        open_actuator("pca9685://", doors)  # before: AttributeError traceback
    with pytest.raises(WasteNetError, match="0x40 on I2C bus 1: .*/dev/i2c-1"):
        open_actuator("pca9685://1/0x40", doors)


def test_numbered_bus_reaches_the_servokit(doors, monkeypatch):
    libs = FakeI2CLibraries(monkeypatch, extended_bus=True, buses=(0,))
    act = open_actuator("pca9685://0/0x41", doors)
    assert libs.opened == [0] and act.kit.address == 0x41
    assert act.open_door(1) and libs.log["moves"] == [(1, 90)]


@pytest.mark.parametrize("hold", ["abc", -5, float("nan"), float("inf"), True, "3"])
def test_door_map_hold_must_be_seconds(hold):
    data = {"doors": {0: {"channel": 0}}, "classes": {"glass": 0}, "hold_s": hold}
    with pytest.raises(ConfigError, match="hold_s must be a number of seconds >= 0"):
        parse_door_map(data)


def test_door_map_hold_from_yaml(tmp_path):
    path = tmp_path / "doors.yaml"
    path.write_text("hold_s: abc\ndoors: {0: {channel: 0}}\nclasses: {glass: 0}\n")
    with pytest.raises(ConfigError, match=f"{path}: hold_s must be a number"):
        load_door_map(path)
    path.write_text("hold_s: 0\ndoors: {0: {channel: 0}}\nclasses: {glass: 0}\n")
    assert load_door_map(path).hold_s == 0.0


def test_door_map_classes_are_checked_against_the_model_labels(doors):
    labels = ["cardboard", "glass", "metal", "paper", "plastic"]
    assert check_door_classes(doors, labels) == []
    assert check_door_classes(doors, [*labels, "trash"]) == ["trash"]  # no door: a warning
    typo = parse_door_map({"doors": {0: {"channel": 0}}, "classes": {"glas": 0, "metal": 0}})
    with pytest.raises(ConfigError, match=r"my.yaml: class\(es\) 'glas' are not labels"):
        check_door_classes(typo, labels, "my.yaml")
