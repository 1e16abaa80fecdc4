"""``wastenet update``: publish gated models to a channel; pull, roll back, status on a bin
(``wastenet.runtime.updates``, ``wastenet.runtime.update_pull``)."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  wastenet update keygen --out keys/                  # keys/update.key (keep), update.pub (bins)
  wastenet gate src/wastenet/assets/model/wastenet-lite0.onnx runs/kitchen/model.onnx \\
      --manifest runs/data5/manifest.json --out runs/kitchen/gate.json
  wastenet update publish runs/kitchen/model.onnx --gate runs/kitchen/gate.json \\
      --key keys/update.key --channel /srv/wastenet/stable
  cd /srv/wastenet && python -m http.server 8000    # or any static web server
  # on each bin, from a timer; a bin run on DIR/current takes a new version between items:
  wastenet update pull http://updates.lan:8000/stable --key update.pub --dir /var/lib/wastenet
  wastenet run --model /var/lib/wastenet/current --source csi://0
  wastenet update rollback --dir /var/lib/wastenet
  wastenet update status --dir /var/lib/wastenet
"""


def register(subparsers, formatter_class=argparse.HelpFormatter) -> None:
    update = subparsers.add_parser(
        "update",
        help="signed model updates: publish a gated model; pull, roll back on a bin",
        description="Publish a model that passed `wastenet gate` as a signed release on a "
        "channel (a folder any web server serves); on a bin, pull the release, check its "
        "signature, files and engine, and swap to it atomically; roll back.",
        formatter_class=formatter_class,
        epilog=EPILOG,
    )
    sub = update.add_subparsers(dest="update_command", metavar="STEP", required=True)

    keygen = sub.add_parser("keygen", help="a new Ed25519 key pair for signing releases")
    keygen.add_argument("--out", type=Path, required=True, help="folder for update.key/.pub")
    keygen.set_defaults(func=_keygen)

    publish = sub.add_parser("publish", help="a gated model as the channel's new release")
    publish.add_argument("model", type=Path, help="an FP32 .onnx, or a model folder")
    publish.add_argument("--gate", type=Path, required=True, help="its passing gate.json")
    publish.add_argument("--key", type=Path, required=True, help="the private update.key")
    publish.add_argument("--channel", type=Path, required=True, help="the channel's folder")
    publish.add_argument("--version", help="the release's name (default: UTC date-time)")
    publish.set_defaults(func=_publish)

    pull = sub.add_parser("pull", help="install the channel's release if it is newer")
    pull.add_argument("url", help="the channel's URL (http://, https:// or file://)")
    pull.add_argument("--key", type=Path, required=True, help="the public update.pub")
    pull.add_argument("--dir", type=Path, required=True, help="the bin's model folder")
    pull.add_argument(
        "--then",
        metavar="COMMAND",
        help="a shell command to run once a new version is installed (not when up to date), "
        "e.g. 'systemctl restart wastenet-bin'",
    )
    pull.set_defaults(func=_pull)

    rollback = sub.add_parser("rollback", help="back to the previous model")
    rollback.add_argument("--dir", type=Path, required=True, help="the bin's model folder")
    rollback.set_defaults(func=_rollback)

    status = sub.add_parser("status", help="the bin's current and previous model")
    status.add_argument("--dir", type=Path, required=True, help="the bin's model folder")
    status.set_defaults(func=_status)


def _describe(release: dict | None) -> str:
    if release is None:
        return "none"
    return f"{release['version']} (sequence {release['sequence']}, {release['model']})"


def _keygen(args: argparse.Namespace) -> int:
    from wastenet.runtime.updates import generate_keys

    private, public = generate_keys(args.out)
    print(f"private key {private} (keep it where you publish), public key {public} (every bin)")
    return 0


def _publish(args: argparse.Namespace) -> int:
    from wastenet.runtime.updates import publish

    release = publish(args.model, args.gate, args.key, args.channel, args.version)
    print(
        f"published {_describe(release)} to {args.channel}: {len(release['files'])} files, "
        f"gate passed against {release['gate']['old_sha256'][:12]}..."
    )
    return 0


TAKEN = "a bin running on current takes it between items (one run on a file: restart it)"


def _pull(args: argparse.Namespace) -> int:
    from wastenet.runtime.update_pull import pull

    result = pull(args.url, args.key, args.dir)
    if result["status"] != "installed":
        print(f"{result['status']}: {_describe(result['release'])}")
        return 0
    print(f"installed {_describe(result['release'])} in {args.dir / 'current'}; engine "
          f"{result['engine']} checked on the samples; {TAKEN}")  # fmt: skip
    if args.then:
        import subprocess

        from wastenet.runtime.updates import UpdateError

        code = subprocess.run(args.then, shell=True, check=False).returncode
        if code != 0:
            raise UpdateError(f"installed, but --then {args.then!r} failed (exit {code})")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from wastenet.runtime.update_pull import rollback

    release = rollback(args.dir)
    print(f"rolled back: current is {_describe(release)}; {TAKEN}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from wastenet.runtime.update_pull import status

    s = status(args.dir)
    print(f"current {_describe(s['current'])}; previous {_describe(s['previous'])}; "
          f"kept {', '.join(s['kept']) or 'none'}; highest sequence {s['highest_sequence']}"
          + (f"; rolled back {', '.join(s['rolled_back'])}" if s["rolled_back"] else ""))  # fmt: skip
    return 0
