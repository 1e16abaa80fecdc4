"""Model updates for a fleet of bins: publish a gated model, and let each bin pull it,
verify it, check the engine it will run, and swap to it atomically, with a rollback.

SPEC's improvement loop ends here; the paper's bins pulled from a LAN web app with no
integrity check. A *channel* is a folder that any static web server serves
(``python -m http.server``, nginx, a bucket):

    CHANNEL/release.json          the latest release, signed
    CHANNEL/<version>/<file>      each release's files

``release.json`` is ``{"release": {...}, "signature": BASE64}``: an Ed25519 signature
over the release's canonical JSON. Bins hold only the public key, so a bin, or anyone
on the network, cannot forge a release. The release names its ``version``; a
``sequence`` that rises by one per publish (a bin never takes one lower than its own,
so an old signed release replayed is refused); the reference model (the FP32 ONNX) and
every file with its SHA-256 and size; the gate it passed (``wastenet gate``: the SHA-256
it judged is the reference's); and ``checks``: the reference's top class on each of the
bundled sample images.

A bin keeps its models in a folder:

    DIR/versions/<version>/       a release's files and its release.json
    DIR/current -> versions/...   what ``wastenet run --model DIR/current`` runs
    DIR/previous -> versions/...  what ``wastenet update rollback`` returns to

``pull`` downloads into ``versions/<version>.partial`` (each file's size and SHA-256
checked as it streams), opens the engine this machine would run from it (the fastest
verified one, as ``wastenet run`` chooses) and checks its top class on every sample
against the release's checks; only then is ``current`` swapped (a new link renamed over
the old: atomic). Anything failing leaves ``current`` as it was.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from pathlib import Path

from wastenet.errors import WasteNetError
from wastenet.meta import file_sha256

RELEASE_FILE = "release.json"
PRIVATE_KEY, PUBLIC_KEY = "update.key", "update.pub"
FORMAT = 1
KEEP_VERSIONS = 3  # current, previous and one more
MAX_RELEASE_BYTES = 1 << 20
CHUNK = 1 << 20
TIMEOUT_S = 30.0


class UpdateError(WasteNetError):
    """A release that cannot be published, fetched, trusted or installed."""


# --- keys and signatures ------------------------------------------------------------


def generate_keys(folder: str | Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair: ``update.key`` (private, mode 0600: keep it on the machine
    that publishes) and ``update.pub`` (give it to every bin). Never overwrites."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    folder = Path(folder).expanduser()
    private, public = folder / PRIVATE_KEY, folder / PUBLIC_KEY
    for path in (private, public):
        if path.exists():
            raise UpdateError(f"{path} exists: a new key would lock every bin out; keep it")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _load_key(path: str | Path, private: bool):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    path = Path(path).expanduser()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UpdateError(f"{path}: cannot read the key ({exc.strerror or exc})") from exc
    want = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    try:
        load = serialization.load_pem_private_key if private else serialization.load_pem_public_key
        key = load(data, None) if private else load(data)
    except (ValueError, TypeError) as exc:
        kind = "private" if private else "public"
        raise UpdateError(f"{path}: not a PEM {kind} key (`wastenet update keygen`)") from exc
    if not isinstance(key, want):
        raise UpdateError(f"{path}: not an Ed25519 key (`wastenet update keygen` makes one)")
    return key


def canonical(release: dict) -> bytes:
    return json.dumps(release, sort_keys=True, separators=(",", ":")).encode("utf-8")


def signed(release: dict, private_key_path: str | Path) -> dict:
    key = _load_key(private_key_path, private=True)
    return {
        "release": release,
        "signature": base64.b64encode(key.sign(canonical(release))).decode(),
    }


def verified(document: object, public_key_path: str | Path, origin: str) -> dict:
    """The release in a ``release.json`` document, once its signature checks out."""
    from cryptography.exceptions import InvalidSignature

    key = _load_key(public_key_path, private=False)
    if not isinstance(document, dict) or not isinstance(document.get("release"), dict):
        raise UpdateError(f"{origin}: not a wastenet release (no 'release' object)")
    try:
        signature = base64.b64decode(str(document.get("signature", "")), validate=True)
        key.verify(signature, canonical(document["release"]))
    except (ValueError, InvalidSignature) as exc:
        raise UpdateError(
            f"{origin}: the signature does not verify with {public_key_path}: not published "
            "by the holder of the key, or altered on the way; nothing installed"
        ) from exc
    release = document["release"]
    if release.get("format") != FORMAT:
        raise UpdateError(f"{origin}: release format {release.get('format')!r}, not {FORMAT}")
    return release


# --- the models in a folder ---------------------------------------------------------


def sample_checks(model: Path) -> list[dict]:
    """The model's top class on each bundled sample image."""
    from wastenet.accelerate import load_engine
    from wastenet.imageio import read_rgb
    from wastenet.preprocess import preprocess
    from wastenet.runtime.app import DEFAULT_SAMPLES

    checks = []
    with load_engine(model) as engine:
        meta = engine.meta
        for path in sorted(DEFAULT_SAMPLES.glob("*.jpg")):
            batch = preprocess(read_rgb(path), (meta.height, meta.width), meta.mean, meta.std)
            probs = engine.predict(batch)[0]
            checks.append({"image": path.name, "top": meta.labels[int(probs.argmax())]})
    return checks


def engine_this_bin_runs(folder: Path) -> Path:
    """The engine ``wastenet run --model FOLDER`` runs: its fastest verified one here."""
    from wastenet.accelerate.select import choose_engine, folder_reference

    return choose_engine(folder_reference(folder)).path


# --- publish ------------------------------------------------------------------------


def check_version(version: str) -> str:
    """A version names a folder on the channel and on the bin: a plain name only."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", str(version)):
        raise UpdateError(
            f"version {version!r}: up to 64 letters, digits, '.', '-' and '_', not starting "
            "with '.', '-' or '_'"
        )
    return version


def read_release(folder: Path) -> dict | None:
    """The release in ``folder/release.json`` (a channel, or a version a bin keeps), or
    None where there is none. Read as stored: verify a fetched one with ``verified``."""
    path = folder / RELEASE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["release"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UpdateError(f"{path}: not a wastenet release ({exc})") from exc


def _gate_for(reference: Path, gate_path: str | Path) -> dict:
    """The gate's verdict on exactly this model, or a refusal."""
    path = Path(gate_path).expanduser()
    try:
        gate = json.loads(path.read_text())
        passed, judged = gate["passed"], gate["new"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UpdateError(f"{path}: not a `wastenet gate --out` verdict ({exc})") from exc
    if judged != file_sha256(reference):
        raise UpdateError(
            f"{path}: that gate judged another model (SHA-256 {judged[:12]}...), not "
            f"{reference}; gate this one: `wastenet gate OLD {reference} --manifest M --out ...`"
        )
    if not passed:
        raise UpdateError(
            f"{path}: the model failed its gate (worse on {', '.join(gate['failed_on'])}); "
            "a release must pass it"
        )
    return {
        "passed": True,
        "old_sha256": gate["old"]["sha256"],
        "manifest_hash": gate["manifest"]["hash"],
        "tolerance_points": gate.get("tolerance_points"),
    }


def publish(
    model: str | Path,
    gate_path: str | Path,
    private_key: str | Path,
    channel: str | Path,
    version: str | None = None,
) -> dict:
    """Put a gated model (an FP32 ONNX, or a model folder: the ONNX, the engines made from
    it and its verify.json) on the channel as its new signed release."""
    from wastenet.accelerate.select import folder_reference

    model, channel = Path(model).expanduser(), Path(channel).expanduser()
    if not model.exists():
        raise UpdateError(f"{model}: no such model file or folder")
    files = sorted(p for p in model.iterdir() if p.is_file()) if model.is_dir() else [model]
    files = [p for p in files if p.name != RELEASE_FILE]
    reference = folder_reference(model) if model.is_dir() else model
    gate = _gate_for(reference, gate_path)
    _load_key(private_key, private=True)  # a bad key fails before anything is copied
    previous = read_release(channel)
    version = check_version(version or time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    target = channel / version
    if target.exists():
        raise UpdateError(f"{target}: version {version} is published already; give another")
    release = {
        "format": FORMAT,
        "version": version,
        "sequence": (previous or {}).get("sequence", 0) + 1,
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": reference.name,
        "files": [
            {"name": p.name, "sha256": file_sha256(p), "bytes": p.stat().st_size} for p in files
        ],  # fmt: skip
        "gate": gate,
        "checks": sample_checks(reference),
    }
    document = signed(release, private_key)
    partial = channel / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for p in files:
        shutil.copy2(p, partial / p.name)
    partial.rename(target)
    tmp = channel / f".{RELEASE_FILE}.tmp"
    tmp.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(tmp, channel / RELEASE_FILE)  # the release appears whole, after its files
    return release
