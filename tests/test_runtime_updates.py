"""Signed model updates over a real HTTP server on 127.0.0.1: publish a gated model, pull
it on a bin, swap atomically, roll back; every tampering refused with current untouched."""

from __future__ import annotations

import functools
import json
import os
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from conftest import CLASS_COLOURS, make_image
from wastenet.cli import main
from wastenet.runtime import update_pull, updates

pytest.importorskip("cryptography")


def colour_model(path: Path, colours=CLASS_COLOURS, sharpness: float = 40.0) -> Path:
    from wastenet.runtime.testing import write_colour_model

    path.parent.mkdir(parents=True, exist_ok=True)
    examples = {
        c: [np.asarray(make_image(rgb, seed=s)) for s in range(3)] for c, rgb in colours.items()
    }
    write_colour_model(path, examples, input_hw=(48, 64), sharpness=sharpness)
    return path


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A real static web server on 127.0.0.1 serving ``tmp_path/www``."""
    www = tmp_path / "www"
    www.mkdir()
    httpd = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def gated(tmp_path_factory, two_source_manifest):
    """Models v1 and v2 (another file, the same answers), v2 gated against v1 for real,
    and a broken one whose gate failed."""
    pytest.importorskip("onnx")
    tmp = tmp_path_factory.mktemp("models")
    v1 = colour_model(tmp / "v1" / "model.onnx")
    v2 = colour_model(tmp / "v2" / "model.onnx", sharpness=41.0)
    broken = colour_model(
        tmp / "broken" / "model.onnx", {**CLASS_COLOURS, "glass": CLASS_COLOURS["cardboard"]}
    )
    gates = {}
    for name, model in (("v1", v1), ("v2", v2), ("broken", broken)):
        gates[name] = tmp / f"gate_{name}.json"
        main(
            [
                "gate",
                str(v1),
                str(model),
                "--manifest",
                str(two_source_manifest),
                "--out",
                str(gates[name]),
            ]
        )
    assert json.loads(gates["v2"].read_text())["passed"]
    assert not json.loads(gates["broken"].read_text())["passed"]
    keys = tmp / "keys"
    assert main(["update", "keygen", "--out", str(keys)]) == 0
    return {"v1": v1, "v2": v2, "broken": broken, "gates": gates, "keys": keys}


def cli(*args) -> int:
    return main(["update", *map(str, args)])


def publish(g, name, channel, version=None) -> int:
    extra = ["--version", version] if version else []
    return cli("publish", g[name], "--gate", g["gates"][name], "--key", g["keys"] / "update.key",
               "--channel", channel, *extra)  # fmt: skip


def test_keys_are_private_and_never_overwritten(gated, capsys):
    keys = gated["keys"]
    assert (keys / "update.key").stat().st_mode & 0o777 == 0o600
    assert b"PUBLIC KEY" in (keys / "update.pub").read_bytes()
    assert cli("keygen", "--out", keys) == 2
    assert "would lock every bin out" in capsys.readouterr().err


def test_publish_pull_swap_rollback(gated, server, tmp_path, capsys):
    www, url = server
    channel, bin_dir, pub = www / "stable", tmp_path / "bin", gated["keys"] / "update.pub"
    assert publish(gated, "v1", channel, "v1") == 0
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 0
    assert "installed v1 (sequence 1, model.onnx)" in capsys.readouterr().out
    current = bin_dir / "current"
    assert current.is_symlink() and current.resolve() == (bin_dir / "versions" / "v1").resolve()
    assert (current / "model.onnx").read_bytes() == gated["v1"].read_bytes()

    # the bin runs the folder: its fastest verified engine, here the one ONNX
    assert main(["run", "--model", str(current), "--max-frames", "3", "--actuator", "sim://",
                 "--run-dir", str(tmp_path / "run")]) == 0  # fmt: skip
    assert "engine: model.onnx" in capsys.readouterr().out

    restarted = tmp_path / "restarted"
    then = ["--then", f"echo restart >> {restarted}"]  # a supervisor's restart, stood in for
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir, *then) == 0
    assert "up to date: v1" in capsys.readouterr().out and not restarted.exists()
    assert publish(gated, "v2", channel, "v2") == 0
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir, *then) == 0
    assert current.resolve().name == "v2" and (bin_dir / "previous").resolve().name == "v1"
    assert restarted.read_text() == "restart\n"  # once, for the version installed

    assert cli("rollback", "--dir", bin_dir) == 0
    assert current.resolve().name == "v1" and (bin_dir / "previous").resolve().name == "v2"
    capsys.readouterr()
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 0  # v2 is not retaken
    assert "rolled back here: skipped" in capsys.readouterr().out and current.resolve().name == "v1"
    assert cli("status", "--dir", bin_dir) == 0
    shown = capsys.readouterr().out
    assert "current v1 (sequence 1" in shown and "rolled back v2" in shown


def test_publish_refuses_a_failed_or_foreign_gate(gated, tmp_path, capsys):
    channel = tmp_path / "channel"
    assert cli("publish", gated["broken"], "--gate", gated["gates"]["broken"], "--key",
               gated["keys"] / "update.key", "--channel", channel) == 2  # fmt: skip
    assert "failed its gate (worse on" in capsys.readouterr().err
    assert cli("publish", gated["v2"], "--gate", gated["gates"]["broken"], "--key",
               gated["keys"] / "update.key", "--channel", channel) == 2  # fmt: skip
    assert "that gate judged another model" in capsys.readouterr().err
    assert not channel.exists()
    assert publish(gated, "v1", channel, "v1") == 0
    assert publish(gated, "v1", channel, "v1") == 2
    assert "published already" in capsys.readouterr().err
    assert publish(gated, "v1", channel, "../v9") == 2
    assert "version '../v9': up to 64 letters" in capsys.readouterr().err
    assert sorted(p.name for p in channel.iterdir()) == ["release.json", "v1"]


def installed(bin_dir: Path) -> str:
    return (bin_dir / "current").resolve().name


def test_every_tampering_is_refused_and_current_stays(gated, server, tmp_path, capsys):
    www, url = server
    channel, bin_dir, pub = www / "stable", tmp_path / "bin", gated["keys"] / "update.pub"
    publish(gated, "v1", channel, "v1")
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 0
    v1_document = (channel / "release.json").read_text()
    publish(gated, "v2", channel, "v2")

    def refused(expect: str) -> None:
        assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 2
        assert expect in capsys.readouterr().err
        assert installed(bin_dir) == "v1"
        assert sorted(p.name for p in (bin_dir / "versions").iterdir()) == ["v1"]  # no partial

    model = channel / "v2" / "model.onnx"
    good = model.read_bytes()
    model.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped on the server
    refused("damaged or altered")
    model.write_bytes(good)

    document = json.loads((channel / "release.json").read_text())
    original = (channel / "release.json").read_text()
    document["release"]["files"][0]["sha256"] = "0" * 64  # edited without the key
    (channel / "release.json").write_text(json.dumps(document))
    refused("the signature does not verify")

    other = tmp_path / "other_keys"
    updates.generate_keys(other)
    (channel / "release.json").write_text(
        json.dumps(updates.signed(document["release"], other / "update.key"))
    )
    refused("the signature does not verify")

    # signed by the right key, but its engine answers differently on this machine
    altered = json.loads(original)["release"]
    altered["checks"] = [
        {**c, "top": "paper" if c["top"] != "paper" else "metal"} for c in altered["checks"]
    ]
    (channel / "release.json").write_text(
        json.dumps(updates.signed(altered, gated["keys"] / "update.key"))
    )
    refused("answers differently from the release")

    (channel / "release.json").write_text(original)
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 0
    assert installed(bin_dir) == "v2"
    (channel / "release.json").write_text(v1_document)  # an old signed release replayed
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 2
    assert "older than one this bin installed" in capsys.readouterr().err
    assert installed(bin_dir) == "v2"

    assert cli("pull", "http://127.0.0.1:9/stable", "--key", pub, "--dir", bin_dir) == 2
    assert "cannot reach the update server" in capsys.readouterr().err
    assert cli("pull", f"{url}/nothing", "--key", pub, "--dir", bin_dir) == 2
    assert "answered 404" in capsys.readouterr().err
    assert installed(bin_dir) == "v2" and os.path.isdir(bin_dir / "previous")


def test_one_update_step_at_a_time(gated, server, tmp_path, capsys):
    www, url = server
    channel, bin_dir, pub = www / "stable", tmp_path / "bin", gated["keys"] / "update.pub"
    publish(gated, "v1", channel, "v1")
    with update_pull._locked(bin_dir):  # a pull from a timer, still running
        assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 2
    assert "another update step is running here" in capsys.readouterr().err
    assert not (bin_dir / "current").exists()
    assert cli("pull", f"{url}/stable", "--key", pub, "--dir", bin_dir) == 0
