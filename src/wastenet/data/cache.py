"""Decoded, fitted images on disk: decode each photo once, then memory-map it forever.

``ImageCache(items, size_hw, cache_dir)[i]`` is ``fit_image(read_rgb(items[i].path),
size_hw)`` as uint8 HWC, read from one ``.npy`` memmap. The file is keyed by the
items' paths and content hashes and the size, so a changed manifest builds a new
file and an unchanged one is reused. A cache built for a superset of the items
(``wastenet data cache`` caches a whole manifest) serves any subset of it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from wastenet.classes import DEFAULT_INPUT_SIZE, DEFAULT_RESOLUTION_PCT, input_size_for, size_text
from wastenet.errors import WasteNetError
from wastenet.imageio import read_rgb
from wastenet.preprocess import fit_image

CACHE_VERSION = 1
ENV_VAR = "WASTENET_CACHE"


def default_cache_dir() -> Path:
    """``$WASTENET_CACHE`` or ``~/.cache/wastenet``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "wastenet"


def parse_size(text: str) -> tuple[int, int]:
    """``HEIGHTxWIDTH`` -> (height, width), or ``PCT%`` -> ``input_size_for(PCT)`` (a
    preset's ``resolution_pct``: ``75%`` is the shipped model's input)."""
    text = str(text).strip().lower()
    usage = (
        f"use HEIGHTxWIDTH (e.g. {size_text(DEFAULT_INPUT_SIZE)}) or a resolution "
        f"percentage (e.g. {DEFAULT_RESOLUTION_PCT:g}%)"
    )
    try:
        if text.endswith("%"):
            pct = float(text[:-1])
            if not math.isfinite(pct):
                raise ValueError(text)
            h, w = input_size_for(pct)
        else:
            h, w = (int(v) for v in text.split("x"))
    except ValueError as exc:
        raise WasteNetError(f"size {text!r}: {usage}") from exc
    if h <= 0 or w <= 0:
        raise WasteNetError(f"size {text!r}: height and width must be positive")
    return h, w


def items_key(items: Sequence, size_hw: tuple[int, int]) -> str:
    digest = hashlib.sha256(f"v{CACHE_VERSION};{size_hw[0]}x{size_hw[1]}\n".encode())
    for it in items:
        digest.update(f"{it.path}\t{it.sha256}\n".encode())
    return digest.hexdigest()[:20]


def _decode(args: tuple[str, int, int]) -> np.ndarray:
    path, h, w = args
    return fit_image(read_rgb(path), (h, w))


class ImageCache:
    """Random access to fitted uint8 HWC images, built once and memory-mapped."""

    def __init__(
        self,
        items: Sequence,
        size_hw: tuple[int, int],
        cache_dir: str | Path | None = None,
        workers: int = 2,
        progress: bool = True,
    ) -> None:
        self.items = list(items)
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.key = items_key(self.items, self.size_hw)
        found = self._find_existing()
        if found is None:
            self._build(workers, progress)
            found = self._find_existing()
            if found is None:
                raise WasteNetError(f"{self.cache_dir}: cache file vanished right after building")
        self.path, self._rows = found
        self._data = np.load(self.path, mmap_mode="r")

    @property
    def _stem(self) -> str:
        h, w = self.size_hw
        return f"images_{self.key}_{h}x{w}"

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> np.ndarray:
        return self._data[self._rows[i]]

    @property
    def nbytes(self) -> int:
        h, w = self.size_hw
        return len(self.items) * h * w * 3

    def _find_existing(self) -> tuple[Path, np.ndarray] | None:
        """This key's file, or any complete cache of the same size holding all items."""
        own = self.cache_dir / f"{self._stem}.npy"
        if own.is_file() and (self.cache_dir / f"{self._stem}.json").is_file():
            return own, np.arange(len(self.items))
        h, w = self.size_hw
        wanted = [(it.path, it.sha256) for it in self.items]
        for index_file in sorted(self.cache_dir.glob(f"images_*_{h}x{w}.json")):
            npy = index_file.with_suffix(".npy")
            if not npy.is_file():
                continue
            try:
                entries = json.loads(index_file.read_text())["entries"]
            except (OSError, ValueError, KeyError):
                continue
            row_of = {(p, s): r for r, (p, s) in enumerate(entries)}
            rows = [row_of.get(k) for k in wanted]
            if all(r is not None for r in rows):
                return npy, np.asarray(rows, dtype=np.int64)
        return None

    def _build(self, workers: int, progress: bool) -> None:
        h, w = self.size_hw
        final = self.cache_dir / f"{self._stem}.npy"
        tmp = self.cache_dir / f"{self._stem}.{os.getpid()}.tmp.npy"
        need = self.nbytes
        free = _free_bytes(self.cache_dir)
        if free is not None and free < need * 1.05:
            raise WasteNetError(
                f"{self.cache_dir}: cache needs {need / 1e9:.1f} GB, only {free / 1e9:.1f} GB "
                f"free; set {ENV_VAR} to another disk"
            )
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.uint8, shape=(len(self.items), h, w, 3)
        )
        jobs = [(str(it.path), h, w) for it in self.items]
        try:
            if workers > 1 and len(jobs) >= 32:
                with ProcessPoolExecutor(max_workers=workers) as pool:
                    results = pool.map(_decode, jobs, chunksize=16)
                    self._fill(out, results, progress)
            else:
                self._fill(out, map(_decode, jobs), progress)
            out.flush()
            del out
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        index = {
            "version": CACHE_VERSION,
            "size_hw": [h, w],
            "entries": [[str(it.path), it.sha256] for it in self.items],
        }
        index_tmp = final.with_suffix(f".{os.getpid()}.json.tmp")
        index_tmp.write_text(json.dumps(index))
        os.replace(index_tmp, final.with_suffix(".json"))

    def _fill(self, out: np.ndarray, results, progress: bool) -> None:
        if progress:
            try:  # tqdm comes with the train extra; the deploy side goes without a bar
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                results = tqdm(results, total=len(out), desc=f"cache {self._stem}", unit="img")
        for row, img in enumerate(results):
            out[row] = img


def _free_bytes(path: Path) -> int | None:
    try:
        st = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize
