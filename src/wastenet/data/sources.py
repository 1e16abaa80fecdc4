"""Sources and how their folders (or detection classes) map onto the canonical classes.

A folder source is ``<root>/<folder>/<files>``. Each folder maps to one class, to a
*set* of classes (a coarse label such as ``paper_and_cardboard``), to ``ood`` (kept for
the "not sure" evaluation) or to ``ignore``. A folder with no mapping is reported as
unknown, never silently dropped.

A detection source (``type: detection`` in its YAML) is a detection dataset whose
labelled boxes become one item each (see ``wastenet.data.detection``); its ``classes``
map the dataset's class names the same way, and every class must be mapped.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path

from wastenet.classes import CLASSES, IGNORE, OOD
from wastenet.config import from_dict
from wastenet.errors import ConfigError, WasteNetError

# Built-in mappings for folders that are not named like a canonical class.
DEFAULT_FOLDER_MAP: dict[str, object] = {
    "paper_and_cardboard": ["paper", "cardboard"],
    "trash": OOD,
}


@dataclass
class SourceConfig:
    """A source YAML: ``name``, ``root`` (relative to the YAML) and a folder map."""

    name: str
    root: str
    type: str = "folder"  # folder | detection
    folders: dict = field(default_factory=dict)
    use_defaults: bool = True  # map class-named folders and DEFAULT_FOLDER_MAP too
    classes: dict = field(default_factory=dict)  # detection: dataset class -> class/ood/ignore
    names: list | None = None  # detection: class names by id (default: root/data.yaml)
    crop: dict = field(default_factory=dict)  # detection: CropConfig (margin, min_side, aspect)
    # every item to the training split, never scored: labels a model gave, not a person
    train_only: bool = False


@dataclass(frozen=True)
class FolderRule:
    """What one folder means: ``labels`` (sorted class names), or ood, or ignore."""

    kind: str  # "labels" | "ood" | "ignore"
    labels: tuple[str, ...] = ()


@dataclass
class Source:
    name: str
    root: Path
    rules: dict[str, FolderRule]
    kind: str = "folder"  # folder | detection
    names: list[str] = field(default_factory=list)  # detection: class names by id
    crop: object = None  # detection: a wastenet.data.detection.CropConfig
    train_only: bool = False  # every item to the training split (SourceConfig.train_only)


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str
    folder: str  # the folder, or a detection source's class name
    rule: FolderRule
    group: str = ""  # items with the same group key land in one split (one photo's crops)
    origin: dict | None = None  # a crop's photo and box


@dataclass
class SourceIndex:
    """Every file found, plus what could not be placed (unknown folders, stray files)."""

    files: list[SourceFile] = field(default_factory=list)
    unknown_folders: list[dict] = field(default_factory=list)
    ignored_folders: list[dict] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)
    # folders (and links) not entered: symlink loops, unreadable folders, broken links
    skipped_folders: list[dict] = field(default_factory=list)
    detection: list[dict] = field(default_factory=list)  # per detection source: kept, dropped


def parse_rule(value: object, where: str) -> FolderRule:
    """Turn a YAML folder value (class, list of classes, ood, ignore/null) into a rule."""
    if value is None or value == IGNORE:
        return FolderRule(IGNORE)
    if value == OOD:
        return FolderRule(OOD)
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list | tuple) or not names:
        raise ConfigError(f"{where}: expected a class, a list of classes, 'ood' or 'ignore'")
    bad = [n for n in names if n not in CLASSES]
    if bad:
        raise ConfigError(
            f"{where}: unknown class(es) {', '.join(map(str, bad))}; "
            f"known: {', '.join(CLASSES)}, or 'ood' / 'ignore'"
        )
    return FolderRule("labels", tuple(sorted(set(names))))


def default_rule(folder: str) -> FolderRule | None:
    if folder in CLASSES:
        return FolderRule("labels", (folder,))
    if folder in DEFAULT_FOLDER_MAP:
        return parse_rule(DEFAULT_FOLDER_MAP[folder], f"default map {folder}")
    return None


def load_source(spec: str | Path) -> Source:
    """A source from a folder (built-in defaults) or a source YAML file."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return Source(name=path.resolve().name, root=path.resolve(), rules={})
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        cfg = from_dict(SourceConfig, data, where=str(path))
        root = Path(cfg.root).expanduser()
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        if not root.is_dir():
            raise WasteNetError(f"{path}: source root {root} is not a folder")
        if cfg.type == "detection":
            source = _detection_source(cfg, root, where=str(path))
            source.train_only = cfg.train_only
            return source
        if cfg.type != "folder":
            raise ConfigError(f"{path}: type must be 'folder' or 'detection', not {cfg.type!r}")
        if cfg.classes or cfg.names or cfg.crop:
            raise ConfigError(f"{path}: classes, names and crop belong to 'type: detection'")
        if not isinstance(cfg.folders, dict):
            raise ConfigError(f"{path}: 'folders' must map folder names to classes")
        rules = {str(k): parse_rule(v, f"{path}: folders.{k}") for k, v in cfg.folders.items()}
        if not cfg.use_defaults:
            rules = {**{"*": FolderRule(IGNORE)}, **rules}
        return Source(name=cfg.name, root=root, rules=rules, train_only=cfg.train_only)
    if not path.exists():
        raise WasteNetError(f"{spec}: no such folder or source YAML")
    raise WasteNetError(f"{spec}: a source is an image folder or a .yaml source config")


def _detection_source(cfg: SourceConfig, root: Path, where: str) -> Source:
    """A detection source: every dataset class mapped, crop options checked."""
    from wastenet.data.detection import crop_config, read_class_names

    if cfg.folders:
        raise ConfigError(f"{where}: a detection source maps 'classes', not 'folders'")
    if not isinstance(cfg.classes, dict) or not cfg.classes:
        raise ConfigError(f"{where}: 'classes' must map each dataset class to a class/ood/ignore")
    names = [str(n) for n in cfg.names] if cfg.names else read_class_names(root)
    rules = {str(k): parse_rule(v, f"{where}: classes.{k}") for k, v in cfg.classes.items()}
    unmapped = [n for n in names if n not in rules]
    if unmapped:
        raise ConfigError(
            f"{where}: dataset classes {', '.join(unmapped)} are not mapped under 'classes' "
            "(map each to a class, a list of classes, ood or ignore)"
        )
    extra = sorted(set(rules) - set(names))
    if extra:
        raise ConfigError(f"{where}: classes {', '.join(extra)} are not in the dataset's names")
    crop = crop_config(cfg.crop, f"{where}: crop")
    return Source(cfg.name, root, rules, kind="detection", names=names, crop=crop)


def rule_for(source: Source, folder: str) -> FolderRule | None:
    if folder in source.rules:
        return source.rules[folder]
    if "*" in source.rules:  # use_defaults: false -> only listed folders count
        return None
    return default_rule(folder)


def link_reason(link: Path) -> str:
    """Why a symlink is not entered: a loop, a link to a folder, or a broken link."""
    try:
        link.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (it never resolves), not followed"
        return f"broken symlink ({exc.strerror}), skipped"
    target = Path(os.path.realpath(link))
    home = Path(os.path.realpath(link.parent))
    if target == home or target in home.parents:
        return f"symlink loop (back to {target}), not followed"
    return f"symlink to a folder ({target}), not followed: link its files or the class folder"


def list_files(folder: Path, skipped: list[dict]) -> list[Path]:
    """Every non-hidden file under ``folder``, sorted. Symlinked sub-folders are not
    entered (so a symlink loop ends at once); they, broken links and unreadable folders
    go to ``skipped`` with the reason, never dropped without a word."""
    files = []

    def unreadable(exc: OSError) -> None:
        skipped.append({"path": str(exc.filename), "reason": f"unreadable ({exc.strerror})"})

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable):
        base = Path(dirpath)
        for name in dirnames:
            if (base / name).is_symlink():  # os.walk does not follow it
                skipped.append({"path": str(base / name), "reason": link_reason(base / name)})
        for name in filenames:
            path = base / name
            if name.startswith("."):
                continue
            if path.is_file():
                files.append(path)
            elif path.is_symlink():
                skipped.append({"path": str(path), "reason": link_reason(path)})
    return sorted(files)


def _top_entries(source: Source, index: SourceIndex) -> list[Path]:
    """The source root's entries; an unreadable root is an error, a looping link is listed."""
    try:
        entries = sorted(source.root.iterdir())
    except OSError as exc:
        raise WasteNetError(
            f"{source.root}: cannot read the source folder ({exc.strerror})"
        ) from exc
    kept = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_symlink() and (not entry.exists() or entry.resolve() in entry.parents):
            reason = link_reason(entry)
            index.skipped_folders.append(
                {"source": source.name, "path": str(entry), "reason": reason}
            )
            continue
        kept.append(entry)
    return kept


def index_source(source: Source, index: SourceIndex | None = None) -> SourceIndex:
    """List every file under the source's folders in sorted (filesystem-independent) order."""
    index = index or SourceIndex()
    for entry in _top_entries(source, index):
        if entry.is_file():
            index.stray_files.append(str(entry))
            continue
        if not entry.is_dir():
            continue
        skipped: list[dict] = []
        files = list_files(entry, skipped)
        rule = rule_for(source, entry.name)
        if rule is None:
            index.unknown_folders.append(
                {"source": source.name, "folder": str(entry), "files": len(files)}
            )
            continue
        if rule.kind == IGNORE:
            index.ignored_folders.append(
                {"source": source.name, "folder": str(entry), "files": len(files)}
            )
            continue
        index.skipped_folders.extend({"source": source.name, **s} for s in skipped)
        index.files.extend(SourceFile(p.resolve(), source.name, entry.name, rule) for p in files)
    return index


def index_detection_source(
    source: Source, index: SourceIndex, crops_dir: Path | None, progress: bool = False
) -> SourceIndex:
    """One SourceFile per kept box; dropped boxes are counted per class, never silent."""
    from wastenet.data.detection import index_detection

    if crops_dir is None:
        raise WasteNetError(f"source {source.name}: a detection source needs a crop folder")
    found = index_detection(
        source.root, source.names, source.crop, crops_dir / source.name, progress
    )
    counts = {n: {"boxes": 0, "kept": 0, "too_small": 0} for n in source.names}
    for rec in found.records:
        rule = source.rules[rec.cls_name]
        counts[rec.cls_name]["boxes"] += 1
        if rec.dropped:
            counts[rec.cls_name]["too_small"] += 1
            continue
        if rule.kind == IGNORE:
            continue
        counts[rec.cls_name]["kept"] += 1
        origin = {"photo": str(rec.photo.image), "box": list(rec.crop_box)}
        group = f"{source.name}/{rec.photo.group}"
        index.files.append(
            SourceFile(rec.path.resolve(), source.name, rec.cls_name, rule, group, origin)
        )
    index.detection.append(
        {
            "source": source.name,
            "classes": {
                n: {"maps_to": describe_rule(source.rules[n]), **c} for n, c in counts.items()
            },
            "photos_without_labels": found.unlabelled_photos,
            "bad_label_lines": found.bad_lines,
        }
    )
    return index


def index_sources(
    specs: list[str | Path], crops_dir: Path | None = None, progress: bool = False
) -> tuple[list[Source], SourceIndex]:
    """Load and index several sources; two sources may not share a name.

    Detection sources write their crops under ``crops_dir/<source name>/``.
    """
    if not specs:
        raise WasteNetError("no source given: pass an image folder or a source YAML")
    sources = [load_source(s) for s in specs]
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WasteNetError(f"two sources are named {', '.join(dupes)}: give each a unique name")
    index = SourceIndex()
    for source in sources:
        if source.kind == "detection":
            index_detection_source(source, index, crops_dir, progress)
        else:
            index_source(source, index)
    if not index.files:
        raise WasteNetError(
            "no usable files in the sources: folders must be named like a class "
            f"({', '.join(CLASSES)}) or mapped in a source YAML"
        )
    return sources, index


def describe_rule(rule: FolderRule) -> object:
    return list(rule.labels) if rule.kind == "labels" else rule.kind


def describe_rules(source: Source) -> dict:
    """A JSON-friendly view of a source's explicit folder map."""
    return {k: describe_rule(r) for k, r in source.rules.items() if k != "*"}
