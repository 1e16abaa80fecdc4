"""The class -> door map of a bin: which door each class opens, each door's servo channel
and angles, how long a door stays open, and whether the bin classifies a crop of the
item. Read from YAML (the bundled ``assets/doors.yaml`` is the paper's three doors),
checked where it enters and matched with the model's labels at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from wastenet.config import from_dict
from wastenet.errors import ConfigError

BUNDLED_DOORS = Path(__file__).resolve().parents[1] / "assets" / "doors.yaml"


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
        if not isinstance(door, int) or isinstance(door, bool) or door not in doors:
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
    hold = data.get("hold_s", 3.0)
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not 0 <= hold < math.inf:
        raise ConfigError(f"{where}: hold_s must be a number of seconds >= 0, not {hold!r}")
    return DoorMap({str(k): v for k, v in classes.items()}, doors, float(hold), crop)


def check_door_classes(doors: DoorMap, labels: list[str], where: str = "door map") -> list[str]:
    """Match the door map's class names with the model's labels, once at start-up.

    A name the model does not have (a typo, another model's class) is a ConfigError;
    the labels with no door are returned, for a warning: those items stay out.
    """
    unknown = sorted(set(doors.classes) - set(labels))
    if unknown:
        raise ConfigError(
            f"{where}: class(es) {', '.join(map(repr, unknown))} are not labels of the model "
            f"({', '.join(labels)}); fix the spelling or pass a door map for this model (--doors)"
        )
    return [label for label in labels if label not in doors.classes]


def load_door_map(path: str | Path | None = None) -> DoorMap:
    """Read a door map YAML; None reads the bundled one (the paper's three doors)."""
    path = Path(BUNDLED_DOORS if path is None else path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read door map ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return parse_door_map(data, str(path))
