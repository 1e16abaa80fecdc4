"""The split manifest: what every later stage trains and tests on.

``manifest.json`` lists each usable image once with its source, labels, content
sha256, split (train/val/test) and fold; out-of-distribution images (TrashNet
``trash``) sit apart in ``ood``. ``Manifest.hash`` identifies the content (not the
file's timestamp), so a model can record exactly which data it saw.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wastenet.errors import ConfigError, WasteNetError
from wastenet.meta import file_sha256

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Item:
    path: str  # absolute
    source: str
    labels: tuple[str, ...]  # one = exact label; several = a set label
    sha256: str
    split: str  # train | val | test | ood
    fold: int | None = None  # k-fold index on train+val; None for test and ood
    converted: tuple[str, ...] = ()  # what reading does to it (grayscale -> RGB, ...)
    phash: str = ""  # canonical (rotation/flip-invariant) perceptual hash, hex
    origin: dict | None = field(default=None, compare=False, hash=False)  # a crop's photo, box
    # out-of-distribution items: the split their photo's group fell in. Outlier exposure
    # trains on "train" only; scoring uses the rest (and None: manifests made before).
    ood_split: str | None = None

    @property
    def for_outlier_exposure(self) -> bool:
        """An out-of-distribution item whose photo group is in the train split."""
        return self.ood_split == "train"

    @property
    def label(self) -> str:
        """The class name for an exact label; ``a+b`` for a set label."""
        return "+".join(self.labels)

    def to_dict(self) -> dict:
        out = {
            "path": self.path,
            "source": self.source,
            "labels": list(self.labels),
            "sha256": self.sha256,
            "split": self.split,
            "fold": self.fold,
        }
        if self.converted:
            out["converted"] = list(self.converted)
        if self.phash:
            out["phash"] = self.phash
        if self.origin:
            out["origin"] = self.origin
        if self.ood_split:
            out["ood_split"] = self.ood_split
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Item:
        return cls(
            path=str(d["path"]),
            source=str(d["source"]),
            labels=tuple(d.get("labels") or ()),
            sha256=str(d["sha256"]),
            split=str(d["split"]),
            fold=d.get("fold"),
            converted=tuple(d.get("converted") or ()),
            phash=str(d.get("phash") or ""),
            origin=d.get("origin") or None,
            ood_split=d.get("ood_split") or None,
        )


def content_hash(items: list[Item], ood: list[Item], seed: int) -> str:
    """sha256 over what matters for training: paths, labels, bytes, split, fold, seed."""
    digest = hashlib.sha256(f"wastenet-manifest-v{FORMAT_VERSION};seed={seed}\n".encode())
    for it in [*items, *ood]:
        line = f"{it.path}\t{it.source}\t{it.label}\t{it.sha256}\t{it.split}\t{it.fold}"
        if it.ood_split:  # absent from older manifests, whose hashes stay as they were
            line += f"\t{it.ood_split}"
        digest.update(f"{line}\n".encode())
    return digest.hexdigest()


@dataclass
class Manifest:
    all_items: list[Item]
    ood: list[Item] = field(default_factory=list)
    seed: int = 0
    folds: int = 5
    ratios: tuple[float, float, float] = (0.72, 0.18, 0.10)
    sources: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # thresholds, timings, creation time

    @property
    def hash(self) -> str:
        return content_hash(self.all_items, self.ood, self.seed)

    def items(self, split: str | None = None, source: str | None = None) -> list[Item]:
        """Items in manifest order, optionally of one split and/or one source."""
        if split is not None and split not in (*SPLITS, "ood"):
            raise WasteNetError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        pool = self.ood if split == "ood" else self.all_items
        return [
            it
            for it in pool
            if (split is None or it.split == split) and (source is None or it.source == source)
        ]

    def ood_items(self, *, training: bool, source: str | None = None) -> list[Item]:
        """Out-of-distribution items for outlier exposure (``training``: photo groups in
        the train split) or for scoring (every other one, so no model is scored on an
        outlier it was trained on)."""
        return [
            it
            for it in self.ood
            if it.for_outlier_exposure == training and (source is None or it.source == source)
        ]

    @property
    def source_names(self) -> list[str]:
        return sorted({it.source for it in [*self.all_items, *self.ood]})

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "hash": self.hash,
            "seed": self.seed,
            "folds": self.folds,
            "ratios": list(self.ratios),
            "sources": self.sources,
            "info": self.info,
            "items": [it.to_dict() for it in self.all_items],
            "ood": [it.to_dict() for it in self.ood],
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path


def load_manifest(path: str | Path) -> Manifest:
    """Read ``manifest.json`` (or a folder holding one); bad input raises WasteNetError."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise WasteNetError(
            f"{path}: no such manifest (make one with 'wastenet data split')"
        ) from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WasteNetError(f"{path}: not a readable manifest JSON ({exc})") from exc
    if not isinstance(data, dict) or "items" not in data:
        raise WasteNetError(f"{path}: not a WasteNet split manifest (no 'items')")
    if int(data.get("format_version", 1)) > FORMAT_VERSION:
        raise WasteNetError(f"{path}: made by a newer WasteNet; upgrade wastenet to read it")
    try:
        manifest = Manifest(
            all_items=_read_items(data["items"], path, "items"),
            ood=_read_items(data.get("ood", []), path, "ood"),
            seed=int(data.get("seed", 0)),
            folds=int(data.get("folds", 5)),
            ratios=tuple(data.get("ratios", (0.72, 0.18, 0.10))),
            sources=list(data.get("sources", [])),
            info=dict(data.get("info", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise WasteNetError(f"{path}: damaged manifest entry ({exc})") from exc
    stored = data.get("hash")
    if stored and stored != manifest.hash:
        raise WasteNetError(f"{path}: manifest content does not match its hash (edited by hand?)")
    return manifest


def _read_items(entries: object, path: Path, key: str) -> list[Item]:
    """The items of one list; each must carry the sha256 of its file's content."""
    if not isinstance(entries, list):
        raise WasteNetError(f"{path}: '{key}' must be a list of items")
    items = []
    for k, d in enumerate(entries):
        if not isinstance(d, dict):
            raise WasteNetError(f"{path}: {key}[{k}] is not an item object")
        where = f"{key}[{k}] ({d['path']})" if d.get("path") else f"{key}[{k}]"
        sha = d.get("sha256")
        if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha):
            raise WasteNetError(
                f"{path}: {where} has no valid sha256 (64 lowercase hex digits of its "
                f"content, got {sha!r}); re-run 'wastenet data split'"
            )
        items.append(Item.from_dict(d))
    return items


def check_files(manifest: Manifest) -> dict[str, list[str]]:
    """Files that vanished or whose content changed since the manifest was written."""
    vanished, changed = [], []
    for it in [*manifest.all_items, *manifest.ood]:
        p = Path(it.path)
        if not p.is_file():
            vanished.append(it.path)
        elif file_sha256(p) != it.sha256:
            changed.append(it.path)
    return {"vanished": vanished, "changed": changed}


def load_split(
    manifest: str | Path,
    split: str | Sequence[str],
    sources: Sequence[str] | None = None,
    purpose: str = "verify",
) -> list:
    """The items of one split, or of several pooled (as ``("val", "test")``), of
    ``sources`` only when given."""
    splits = [split] if isinstance(split, str) else list(split)
    m = load_manifest(manifest)
    items = [it for name in splits for it in m.items(split=name)]
    if sources:
        items = [it for it in items if it.source in sources]
    if not items:
        of = f" of {', '.join(sources)}" if sources else ""
        raise ConfigError(f"{manifest}: no {' + '.join(splits)} images{of} to {purpose} on")
    return items
