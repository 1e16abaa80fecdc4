"""Image-folder sources and how their folders map onto the canonical classes.

A source is ``<root>/<folder>/<files>``. Each folder maps to one class, to a *set* of
classes (a coarse label such as ``paper_and_cardboard``), to ``ood`` (kept for the
"not sure" evaluation) or to ``ignore``. A folder with no mapping is reported as
unknown, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wastenet.classes import CLASSES
from wastenet.config import from_dict
from wastenet.errors import ConfigError, WasteNetError

OOD = "ood"
IGNORE = "ignore"

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
    folders: dict = field(default_factory=dict)
    use_defaults: bool = True  # map class-named folders and DEFAULT_FOLDER_MAP too


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


@dataclass(frozen=True)
class SourceFile:
    path: Path
    source: str
    folder: str
    rule: FolderRule


@dataclass
class SourceIndex:
    """Every file found, plus what could not be placed (unknown folders, stray files)."""

    files: list[SourceFile] = field(default_factory=list)
    unknown_folders: list[dict] = field(default_factory=list)
    ignored_folders: list[dict] = field(default_factory=list)
    stray_files: list[str] = field(default_factory=list)


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
        if not isinstance(cfg.folders, dict):
            raise ConfigError(f"{path}: 'folders' must map folder names to classes")
        rules = {str(k): parse_rule(v, f"{path}: folders.{k}") for k, v in cfg.folders.items()}
        if not cfg.use_defaults:
            rules = {**{"*": FolderRule(IGNORE)}, **rules}
        return Source(name=cfg.name, root=root, rules=rules)
    if not path.exists():
        raise WasteNetError(f"{spec}: no such folder or source YAML")
    raise WasteNetError(f"{spec}: a source is an image folder or a .yaml source config")


def rule_for(source: Source, folder: str) -> FolderRule | None:
    if folder in source.rules:
        return source.rules[folder]
    if "*" in source.rules:  # use_defaults: false -> only listed folders count
        return None
    return default_rule(folder)


def index_source(source: Source, index: SourceIndex | None = None) -> SourceIndex:
    """List every file under the source's folders in sorted (filesystem-independent) order."""
    index = index or SourceIndex()
    for entry in sorted(source.root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file():
            index.stray_files.append(str(entry))
            continue
        if not entry.is_dir():
            continue
        files = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith("."))
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
        index.files.extend(SourceFile(p.resolve(), source.name, entry.name, rule) for p in files)
    return index


def index_sources(specs: list[str | Path]) -> tuple[list[Source], SourceIndex]:
    """Load and index several sources; two sources may not share a name."""
    if not specs:
        raise WasteNetError("no source given: pass an image folder or a source YAML")
    sources = [load_source(s) for s in specs]
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise WasteNetError(f"two sources are named {', '.join(dupes)}: give each a unique name")
    index = SourceIndex()
    for source in sources:
        index_source(source, index)
    if not index.files:
        raise WasteNetError(
            "no usable files in the sources: folders must be named like a class "
            f"({', '.join(CLASSES)}) or mapped in a source YAML"
        )
    return sources, index


def describe_rules(source: Source) -> dict:
    """A JSON-friendly view of a source's explicit folder map."""
    return {
        k: (list(r.labels) if r.kind == "labels" else r.kind)
        for k, r in source.rules.items()
        if k != "*"
    }
