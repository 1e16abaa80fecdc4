"""The sample store: frames and predictions kept on the bin for review and retraining.

SQLite in WAL mode. The store deletes only files its own database names, so a
user's file in ``images/``, or the images of a store copied without its ``-wal``
file, are never touched:

* Before a JPEG is written, a ``journal`` row naming it (and holding the sample's
  row) is committed. The JPEG goes to ``NAME.tmp`` (``NAME`` carries the pid and a
  random token), is fsynced and renamed to ``NAME``; then one transaction inserts
  the sample row and drops the journal row. Every committed row's image exists
  even after ``kill -9`` or a power cut.
* On opening, each leftover ``write`` journal row is settled: its ``.tmp`` file
  (a write that never completed) is removed, and a complete ``NAME`` whose row
  never committed is rolled forward into ``samples`` (never deleted). Files no
  row names are left alone and listed in one log line ("unknown files left alone").
* Eviction deletes the oldest rows and records their files as ``evict`` journal
  rows in one transaction, then unlinks the files and drops those journal rows;
  opening finishes an eviction a crash interrupted. Samples a person has labelled
  (``labels``, written by ``wastenet samples label``: ``wastenet.runtime.review``)
  go last.
* A write that fails (disk full: ``OSError(ENOSPC)``, or SQLite's "disk is full")
  removes its temporary file and journal row and drops the sample: one warning
  per burst of failures, no exception, so the bin keeps sorting.
* One process at a time: opening takes an exclusive ``fcntl.flock`` on
  ``DIR/.lock``; a second process (or a second store object) opening the same
  folder gets ``WasteNetError("... store in use by another process ...")`` and
  touches nothing. (Refusing is simpler than sharing and obviously safe.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from wastenet.errors import ConfigError, WasteNetError
from wastenet.sureness import NotSureRule

log = logging.getLogger(__name__)

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
CREATE TABLE IF NOT EXISTS labels (
    image_path TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    name TEXT PRIMARY KEY,
    op TEXT NOT NULL CHECK (op IN ('write', 'evict')),
    sample TEXT
);
"""
COLUMNS = (
    "ts",
    "frame_index",
    "prediction",
    "confidence",
    "probs",
    "vote",
    "model_version",
    "image_path",
    "bytes",
)
INSERT_SAMPLE = (
    f"INSERT INTO samples ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
LOCK_FILE = ".lock"
LISTED_UNKNOWN = 20  # unknown file names shown in the start-up log line


@dataclass
class SamplePolicy:
    """Which frames to keep: ``all``, ``uncertain`` (the model card's "not sure" rule says
    not sure: ``wastenet.sureness``: the frames to label), ``every:k``, or
    ``uncertain+every:k`` (both: frames to label, and sure ones to self-train on)."""

    mode: str = "all"
    every: int = 1
    rule: NotSureRule = field(default_factory=NotSureRule)

    @classmethod
    def parse(cls, text: str, rule: NotSureRule | None = None) -> SamplePolicy:
        rule = rule or NotSureRule()
        text = text.strip().lower()
        if text in ("all", "uncertain"):
            return cls(text, 1, rule)
        mode, _, every = text.rpartition("every:")
        if mode in ("", "uncertain+") and every:
            try:
                k = int(every)
            except ValueError:
                k = 0
            if k >= 1:
                return cls(mode + "every", k, rule)
        raise ConfigError(
            f"sampling policy {text!r}: use all, uncertain, every:K or uncertain+every:K (K >= 1)"
        )

    def wants(self, seen: int, sureness: float) -> bool:
        if self.mode == "all":
            return True
        uncertain = self.mode.startswith("uncertain") and sureness < self.rule.threshold
        return uncertain or (self.mode.endswith("every") and seen % self.every == 0)


def _tmp_name(name: str) -> str:
    return name + ".tmp"


def _lock_store(root: Path) -> int:
    """An exclusive ``flock`` on ``root/.lock`` (released when the fd closes, or the process dies)."""
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
        os.close(fd)
        raise WasteNetError(
            f"{root}: sample store in use by another process (pid {holder}); "
            "give each bin its own --store folder"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class SampleStore:
    """Rows in ``DIR/samples.sqlite``, JPEGs in ``DIR/images``; see the module docstring."""

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
        self.policy = policy or SamplePolicy()
        self.quota_bytes = quota_bytes
        self.model_version = model_version
        self.jpeg_quality = jpeg_quality
        self.durable = durable
        self.seen = 0
        self.saved = 0
        self.evicted = 0
        self.dropped = 0  # samples lost to write failures (disk full ...)
        self._burst = 0  # failures since the last successful write
        self.db: sqlite3.Connection | None = None
        self._lock: int | None = None
        try:
            self.images.mkdir(parents=True, exist_ok=True)
            self._lock = _lock_store(self.root)
            self.db = sqlite3.connect(self.root / "samples.sqlite", isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute(f"PRAGMA synchronous={synchronous}")
            self.db.executescript(SCHEMA)
            self.recover()
            total = self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM samples").fetchone()
            self._bytes = total[0]
        except (OSError, sqlite3.Error) as exc:
            self.close()
            raise WasteNetError(f"{self.root}: cannot open the sample store ({exc})") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One explicit transaction (the connection is in autocommit mode otherwise)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise

    def recover(self) -> dict[str, int]:
        """Settle the journal an interrupted run left; delete only files it names.

        A ``write`` row's ``.tmp`` file (a write that never completed) is removed and a
        complete image whose sample row never committed is rolled forward into
        ``samples``; an ``evict`` row's image is removed. Files that no row names are
        left alone and listed in one warning.
        """
        counts = {"removed": 0, "rolled_forward": 0, "unknown": 0}
        entries = self.db.execute("SELECT name, op, sample FROM journal").fetchall()
        for name, op, sample in entries:
            doomed = self.images / (name if op == "evict" else _tmp_name(name))
            try:
                if doomed.is_file():
                    doomed.unlink()
                    counts["removed"] += 1
            except OSError as exc:  # the journal row stays for the next open
                log.warning("sample store %s: cannot remove %s (%s)", self.root, doomed, exc)
                continue
            with self._transaction() as db:
                if op == "write" and self._complete(name, sample):
                    db.execute(INSERT_SAMPLE, json.loads(sample))
                    counts["rolled_forward"] += 1
                db.execute("DELETE FROM journal WHERE name = ?", (name,))
        known = {row[0] for row in self.db.execute("SELECT image_path FROM samples")}
        unknown = sorted(p.name for p in self.images.iterdir() if p.name not in known)
        counts["unknown"] = len(unknown)
        if unknown:
            shown = ", ".join(unknown[:LISTED_UNKNOWN])
            more = len(unknown) - LISTED_UNKNOWN
            log.warning(
                "sample store %s: %d unknown files left alone in images/ (no row names them): %s%s",
                self.root,
                len(unknown),
                shown,
                f", ... and {more} more" if more > 0 else "",
            )
        if counts["removed"] or counts["rolled_forward"]:
            log.info(
                "sample store %s: finished an interrupted run: %d leftover files removed, "
                "%d samples rolled forward",
                self.root,
                counts["removed"],
                counts["rolled_forward"],
            )
        return counts

    def _complete(self, name: str, sample: str | None) -> bool:
        """Whether a journalled write reached its final name intact but has no row yet."""
        path = self.images / name
        if sample is None or not path.is_file():
            return False
        if path.stat().st_size != json.loads(sample)[COLUMNS.index("bytes")]:
            return False
        taken = self.db.execute("SELECT 1 FROM samples WHERE image_path = ?", (name,)).fetchone()
        return taken is None

    def offer(
        self,
        image_rgb: np.ndarray,
        prediction: str,
        probs: np.ndarray,
        vote: str | None,
        frame_index: int = 0,
        ts: float | None = None,
        sureness: float | None = None,
    ) -> int | None:
        """Keep the sample if the policy wants it; returns its row id, or None (not wanted, or
        dropped because the write failed: one warning per burst of failures). ``sureness`` is
        the rule's sureness of ``probs`` where the caller has it already (the bin's loop)."""
        confidence = float(self.policy.rule.sureness(probs) if sureness is None else sureness)
        self.seen += 1
        if not self.policy.wants(self.seen - 1, confidence):
            return None
        ts = time.time() if ts is None else ts
        data = self._encode(image_rgb)
        name = self._new_name(ts, frame_index)
        probs_json = json.dumps([round(float(p), 6) for p in probs])
        record = (
            ts,
            frame_index,
            prediction,
            confidence,
            probs_json,
            vote,
            self.model_version,
            name,
            len(data),
        )
        row_id = self._save(name, data, record)
        if row_id is None:
            return None
        self.saved += 1
        self._bytes += len(data)
        if self.quota_bytes is not None and self._bytes > self.quota_bytes:
            try:
                self.evict(self.quota_bytes)
            except (OSError, sqlite3.Error) as exc:
                log.warning(
                    "sample store %s: eviction failed (%s); tried again later", self.root, exc
                )
        return row_id

    def _encode(self, image_rgb: np.ndarray) -> bytes:
        bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        if not ok:
            raise WasteNetError("could not encode a frame as JPEG")
        return data.tobytes()

    def _new_name(self, ts: float, frame_index: int) -> str:
        """A fresh image name: time, frame, pid and a random token; never an existing file's."""
        while True:
            token = secrets.token_hex(4)
            name = f"{int(ts * 1000):013d}-{frame_index:08d}-{os.getpid()}-{token}.jpg"
            if not any((self.images / n).exists() for n in (name, _tmp_name(name))):
                return name

    def _save(self, name: str, data: bytes, record: tuple) -> int | None:
        """Journal the file, write it, then commit its row; on failure clean up and drop it."""
        try:
            with self._transaction() as db:
                db.execute(
                    "INSERT INTO journal (name, op, sample) VALUES (?, 'write', ?)",
                    (name, json.dumps(record)),
                )
        except sqlite3.Error as exc:
            self._drop(exc)
            return None
        try:
            self._write_jpeg(data, self.images / name)
            with self._transaction() as db:
                row_id = db.execute(INSERT_SAMPLE, record).lastrowid
                db.execute("DELETE FROM journal WHERE name = ?", (name,))
        except (OSError, sqlite3.Error) as exc:
            self._abandon(name)
            self._drop(exc)
            return None
        if self._burst:
            log.warning(
                "sample store %s: writing again after dropping %d samples", self.root, self._burst
            )
            self._burst = 0
        return int(row_id)

    def _write_jpeg(self, data: bytes, path: Path) -> None:
        """``data`` to ``path`` via a fsynced temporary file; the temporary never outlives an error."""
        tmp = path.with_name(_tmp_name(path.name))
        try:
            with open(tmp, "xb") as handle:
                self._write_file(handle, data)
                if self.durable:
                    handle.flush()
                    os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise

    @staticmethod
    def _write_file(handle, data: bytes) -> None:
        handle.write(data)

    def _abandon(self, name: str) -> None:
        """Undo a journalled write that failed: its files (unless a row took the image), its row."""
        with contextlib.suppress(OSError):
            (self.images / _tmp_name(name)).unlink(missing_ok=True)
        try:
            taken = self.db.execute("SELECT 1 FROM samples WHERE image_path = ?", (name,))
            if taken.fetchone() is None:
                (self.images / name).unlink(missing_ok=True)
                self.db.execute("DELETE FROM journal WHERE name = ?", (name,))
        except (OSError, sqlite3.Error):
            pass  # the journal row stays; the next open settles it

    def _drop(self, exc: Exception) -> None:
        self.dropped += 1
        self._burst += 1
        if self._burst == 1:
            log.warning(
                "sample store %s: cannot save a sample (%s); dropping samples until a write "
                "succeeds, the bin goes on",
                self.root,
                exc,
            )

    def evict(self, quota_bytes: int) -> int:
        """Drop the oldest samples until the store fits ``quota_bytes``: rows first, then files."""
        rows = []
        total = self._bytes
        for row_id, name, size in self.db.execute(  # the unlabelled first, oldest first
            "SELECT s.id, s.image_path, s.bytes FROM samples s LEFT JOIN labels l "
            "USING (image_path) ORDER BY l.label IS NOT NULL, s.id"
        ):
            if total <= quota_bytes:
                break
            rows.append((row_id, name))
            total -= size
        if not rows:
            return 0
        with self._transaction() as db:  # the files to delete are journalled with the rows
            db.executemany("DELETE FROM samples WHERE id = ?", [(r,) for r, _ in rows])
            db.executemany("DELETE FROM labels WHERE image_path = ?", [(n,) for _, n in rows])
            db.executemany(
                "INSERT OR REPLACE INTO journal (name, op, sample) VALUES (?, 'evict', NULL)",
                [(name,) for _, name in rows],
            )
        self._bytes = total
        self.evicted += len(rows)
        gone = []
        for _, name in rows:
            try:
                (self.images / name).unlink(missing_ok=True)
                gone.append((name,))
            except OSError as exc:  # the journal row stays; the next open retries
                log.warning("sample store %s: cannot remove %s (%s)", self.root, name, exc)
        with self._transaction() as db:
            db.executemany("DELETE FROM journal WHERE name = ? AND op = 'evict'", gone)
        return len(rows)

    @property
    def total_bytes(self) -> int:
        return int(self._bytes)

    def rows(self) -> list[dict]:
        """Every sample, oldest first, with its ``label`` (None where nobody labelled it)."""
        cur = self.db.execute(
            "SELECT s.*, l.label FROM samples s LEFT JOIN labels l USING (image_path) ORDER BY s.id"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def set_labels(self, labels: dict[str, str | None]) -> None:
        """Label samples by image name (None: no label) in one transaction, all or none."""
        known = {row[0] for row in self.db.execute("SELECT image_path FROM samples")}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise WasteNetError(
                f"{self.root}: no sample named {', '.join(unknown[:5])}"
                + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            )
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM labels WHERE image_path = ?",
                [(n,) for n, label in labels.items() if label is None],
            )
            db.executemany(
                "INSERT OR REPLACE INTO labels (image_path, label, ts) VALUES (?, ?, ?)",
                [(n, label, now) for n, label in labels.items() if label is not None],
            )

    def close(self) -> None:
        """Close the database, then release the store's lock."""
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None
