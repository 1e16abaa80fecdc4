"""The sample store: frames and predictions kept on the bin for review and retraining.

SQLite in WAL mode, one transaction per sample. The JPEG is written first (to a
temporary name, fsynced, then renamed into place) and the row committed after,
so every committed row's image exists even after ``kill -9`` or a power cut;
a crash can at worst leave an image without a row, which ``open`` removes.
Eviction deletes the oldest rows first, commits, then unlinks their files.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wastenet.classes import CONFIDENCE_THRESHOLD
from wastenet.errors import ConfigError, WasteNetError

SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    frame_index INTEGER,
    prediction TEXT NOT NULL,
    confidence REAL NOT NULL,
    probs TEXT NOT NULL,
    vote TEXT,
    model_version TEXT,
    image_path TEXT NOT NULL,
    bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
"""


@dataclass
class SamplePolicy:
    """Which frames to keep: ``all``, ``uncertain`` (top probability below a bar) or ``every:k``."""

    mode: str = "all"
    every: int = 1
    uncertain_below: float = CONFIDENCE_THRESHOLD

    @classmethod
    def parse(cls, text: str, uncertain_below: float = CONFIDENCE_THRESHOLD) -> SamplePolicy:
        text = text.strip().lower()
        if text in ("all", "uncertain"):
            return cls(text, 1, uncertain_below)
        if text.startswith("every:"):
            try:
                k = int(text.split(":", 1)[1])
            except ValueError:
                k = 0
            if k >= 1:
                return cls("every", k, uncertain_below)
        raise ConfigError(f"sampling policy {text!r}: use all, uncertain or every:K (K >= 1)")

    def wants(self, seen: int, confidence: float) -> bool:
        if self.mode == "uncertain":
            return confidence < self.uncertain_below
        if self.mode == "every":
            return seen % self.every == 0
        return True


class SampleStore:
    def __init__(
        self,
        root: str | Path,
        policy: SamplePolicy | None = None,
        quota_bytes: int | None = None,
        model_version: str = "",
        jpeg_quality: int = 90,
        durable: bool = True,
        synchronous: str = "NORMAL",
    ) -> None:
        self.root = Path(root)
        self.images = self.root / "images"
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.root / "samples.sqlite", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise WasteNetError(f"{self.root}: cannot open the sample store ({exc})") from exc
        self.policy = policy or SamplePolicy()
        self.quota_bytes = quota_bytes
        self.model_version = model_version
        self.jpeg_quality = jpeg_quality
        self.durable = durable
        self.seen = 0
        self.saved = 0
        self.evicted = 0
        self._bytes = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM samples").fetchone()[0]
        self.remove_orphans()

    def remove_orphans(self) -> int:
        """Delete images (and temporary files) that no committed row refers to."""
        known = {row[0] for row in self.db.execute("SELECT image_path FROM samples")}
        removed = 0
        for path in self.images.iterdir():
            if path.name not in known:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def offer(
        self,
        image_rgb: np.ndarray,
        prediction: str,
        probs: np.ndarray,
        vote: str | None,
        frame_index: int = 0,
        ts: float | None = None,
    ) -> int | None:
        """Keep the sample if the policy wants it; returns its row id or None."""
        confidence = float(np.max(probs))
        self.seen += 1
        if not self.policy.wants(self.seen - 1, confidence):
            return None
        ts = time.time() if ts is None else ts
        name = f"{int(ts * 1000):013d}-{frame_index:08d}-{os.getpid()}.jpg"
        size = self._write_jpeg(image_rgb, self.images / name)
        probs_json = json.dumps([round(float(p), 6) for p in probs])
        with self.db:  # one transaction per sample
            cur = self.db.execute(
                "INSERT INTO samples (ts, frame_index, prediction, confidence, probs, vote,"
                " model_version, image_path, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ts,
                    frame_index,
                    prediction,
                    confidence,
                    probs_json,
                    vote,
                    self.model_version,
                    name,
                    size,
                ),
            )
        self.saved += 1
        self._bytes += size
        if self.quota_bytes is not None and self._bytes > self.quota_bytes:
            self.evict(self.quota_bytes)
        return int(cur.lastrowid)

    def _write_jpeg(self, image_rgb: np.ndarray, path: Path) -> int:
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise WasteNetError("could not encode a frame as JPEG")
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            handle.write(data.tobytes())
            if self.durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        return len(data)

    def evict(self, quota_bytes: int) -> int:
        """Drop the oldest samples until the store fits ``quota_bytes``: rows first, then files."""
        rows = []
        total = self._bytes
        for row_id, name, size in self.db.execute(
            "SELECT id, image_path, bytes FROM samples ORDER BY id"
        ):
            if total <= quota_bytes:
                break
            rows.append((row_id, name))
            total -= size
        if not rows:
            return 0
        with self.db:
            self.db.executemany("DELETE FROM samples WHERE id = ?", [(r,) for r, _ in rows])
        for _, name in rows:
            (self.images / name).unlink(missing_ok=True)
        self._bytes = total
        self.evicted += len(rows)
        return len(rows)

    @property
    def total_bytes(self) -> int:
        return int(self._bytes)

    def rows(self) -> list[dict]:
        cur = self.db.execute("SELECT * FROM samples ORDER BY id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None  # type: ignore[assignment]
