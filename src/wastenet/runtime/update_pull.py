"""The bin's side of model updates (``wastenet.runtime.updates`` has the release format):
pull a signed release, check it, swap ``current`` to it atomically; roll back; status."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from wastenet.runtime.updates import (
    CHUNK,
    KEEP_VERSIONS,
    MAX_RELEASE_BYTES,
    RELEASE_FILE,
    TIMEOUT_S,
    UpdateError,
    check_version,
    engine_this_bin_runs,
    read_release,
    sample_checks,
    verified,
)

CURRENT, PREVIOUS, VERSIONS = "current", "previous", "versions"
STATE_FILE = "state.json"  # the highest sequence installed, and the versions rolled back


def _state(root: Path) -> dict:
    path = root / STATE_FILE
    if not path.is_file():
        return {"highest_sequence": 0, "rolled_back": []}
    try:
        state = json.loads(path.read_text())
        return {"highest_sequence": int(state["highest_sequence"]),
                "rolled_back": list(state["rolled_back"])}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UpdateError(f"{path}: damaged ({exc}); fix or remove it") from exc


def _save_state(root: Path, state: dict) -> None:
    tmp = root / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, root / STATE_FILE)


def _get(url: str, limit: int | None = None):
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise UpdateError(f"{url}: the server answered {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise UpdateError(f"{url}: cannot reach the update server ({reason})") from exc
    if limit is not None:
        with response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise UpdateError(f"{url}: over {limit} bytes, not a release")
        return data
    return response


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One update step at a time in ``root`` (a timer's pull, a person's rollback)."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise UpdateError(f"{root}: another update step is running here; try again") from exc
        yield
    finally:
        os.close(fd)


def _download(url: str, entry: dict, into: Path) -> None:
    """One file, streamed, its size and SHA-256 checked against the release."""
    name = entry["name"]
    if Path(name).name != name or name in ("", ".", ".."):
        raise UpdateError(f"{url}: the release names a file {name!r} outside its folder")
    h, size = hashlib.sha256(), 0
    with _get(url) as response, open(into / name, "wb") as handle:
        for block in iter(lambda: response.read(CHUNK), b""):
            size += len(block)
            if size > entry["bytes"]:
                raise UpdateError(f"{url}: longer than the release's {entry['bytes']} bytes")
            h.update(block)
            handle.write(block)
    if size != entry["bytes"] or h.hexdigest() != entry["sha256"]:
        raise UpdateError(
            f"{url}: {size} bytes with SHA-256 {h.hexdigest()[:12]}..., the release says "
            f"{entry['bytes']} bytes, {entry['sha256'][:12]}...: damaged or altered; nothing installed"
        )


def _check_engine(folder: Path, release: dict) -> str:
    """Open the engine this bin would run from ``folder`` and compare its top class on
    every sample with the release's; returns the engine's file name."""
    engine = engine_this_bin_runs(folder)
    got = {c["image"]: c["top"] for c in sample_checks(engine)}
    wrong = [c["image"] for c in release["checks"] if got.get(c["image"]) != c["top"]]
    if wrong:
        raise UpdateError(
            f"{engine.name}: on this machine it answers differently from the release on "
            f"{', '.join(wrong)}; nothing installed"
        )
    return engine.name


def _point(root: Path, link: str, target: Path) -> None:
    """``root/link`` -> ``target``, atomically (a new link renamed over the old one)."""
    tmp = root / f".{link}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, root), tmp)
    os.replace(tmp, root / link)


def _prune(root: Path, keep: int) -> None:
    """Keep ``current``, ``previous`` and the newest others, ``keep`` versions in all."""
    held = {(root / link).resolve() for link in (CURRENT, PREVIOUS) if (root / link).exists()}
    versions = sorted((root / VERSIONS).iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    room = keep - len(held)
    for path in versions:
        if path.resolve() in held or path.name.endswith(".partial"):
            continue
        if room > 0:
            room -= 1
            continue
        shutil.rmtree(path)


def pull(url: str, public_key: str | Path, root: str | Path, keep: int = KEEP_VERSIONS) -> dict:
    """Install the channel's release at ``url`` into ``root`` if it is newer than the one
    there. Returns ``{"status": "installed" | "up to date", "release", "engine"}``."""
    root = Path(root).expanduser()
    base = url.rstrip("/") + "/"
    release_url = urllib.parse.urljoin(base, RELEASE_FILE)
    data = _get(release_url, MAX_RELEASE_BYTES)
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise UpdateError(f"{release_url}: not JSON ({exc})") from exc
    release = verified(document, public_key, release_url)
    with _locked(root):
        return _install(root, base, document, release, keep)


def _install(root: Path, base: str, document: dict, release: dict, keep: int) -> dict:
    state = _state(root)
    version = check_version(release["version"])
    if version in state["rolled_back"]:
        return {"status": "rolled back here: skipped", "release": release, "engine": None}
    if release["sequence"] < state["highest_sequence"]:
        raise UpdateError(
            f"{base}: release {version} (sequence {release['sequence']}) is older than "
            f"one this bin installed (sequence {state['highest_sequence']}): refused (an old "
            "release replayed?)"
        )
    if release["sequence"] == state["highest_sequence"]:
        return {"status": "up to date", "release": release, "engine": None}
    versions = root / VERSIONS
    target, partial = versions / version, versions / f"{version}.partial"
    if target.exists():
        raise UpdateError(f"{target}: this bin keeps a version of that name already; refused")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for entry in release["files"]:
            file_url = urllib.parse.urljoin(base, f"{urllib.parse.quote(version)}/"
                                                  f"{urllib.parse.quote(entry['name'])}")  # fmt: skip
            _download(file_url, entry, partial)
        (partial / RELEASE_FILE).write_text(json.dumps(document, indent=1) + "\n")
        engine = _check_engine(partial, release)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    if (root / CURRENT).exists():
        _point(root, PREVIOUS, (root / CURRENT).resolve())
    _point(root, CURRENT, target)
    _save_state(root, {**state, "highest_sequence": release["sequence"]})
    _prune(root, keep)
    return {"status": "installed", "release": release, "engine": engine}


def rollback(root: str | Path) -> dict:
    """Back to ``previous``; the version left is remembered, so the next pull skips it
    (a newer release is taken as usual). Returns the release now current."""
    root = Path(root).expanduser()
    if not (root / PREVIOUS).exists():
        raise UpdateError(f"{root}: no previous version to roll back to")
    with _locked(root):
        return _swap_back(root)


def _swap_back(root: Path) -> dict:
    left = read_release(root / CURRENT)
    now, before = (root / CURRENT).resolve(), (root / PREVIOUS).resolve()
    state = _state(root)
    _point(root, CURRENT, before)
    _point(root, PREVIOUS, now)
    if left is not None:
        _save_state(root, {**state, "rolled_back": [*state["rolled_back"], left["version"]]})
    return read_release(root / CURRENT)


def status(root: str | Path) -> dict:
    root = Path(root).expanduser()
    out = {link: read_release(root / link) for link in (CURRENT, PREVIOUS)}
    out.update(_state(root))
    folder = root / VERSIONS
    out["kept"] = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
    return out
