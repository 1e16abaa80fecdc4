"""Training on two CPU processes through torchrun (DDP with gloo), frozen layers included."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from wastenet.classes import CLASSES


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """Two gloo ranks on this CPU, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    port = str(_free_port())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", port, *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_ddp_two_cpu_processes_with_gloo(tiny_manifest, tmp_path):
    """The torchrun path: two gloo ranks train the same model; rank 0 writes the run."""
    cfg_path = tmp_path / "cfg.yaml"
    from wastenet.config import save_yaml

    save_yaml(
        tiny_config(tiny_manifest, tmp_path, phases=[{"name": "m", "epochs": 1, "lr": 1e-3}]),
        cfg_path,
    )
    args = ["-m", "wastenet.cli", "train", str(cfg_path), "--out", str(tmp_path / "ddp")]
    done = _torchrun(*args, "--no-progress")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (tmp_path / "ddp" / "model.safetensors").exists()


# Trains like `wastenet train`, and saves each rank's parameters after every epoch.
DDP_DRIVER = """
import sys
from pathlib import Path

from safetensors.torch import save_file

from wastenet.train import loop
from wastenet.train.config import load_train_config


def save_each_rank(ctx, pos, optimizer, save=loop._save_progress):
    save(ctx, pos, optimizer)
    params = {k: p.detach().cpu().contiguous() for k, p in ctx.model_core.named_parameters()}
    name = f"rank{ctx.rank}_epoch{pos.global_epoch}.safetensors"
    save_file(params, str(Path(sys.argv[2]) / name))


loop._save_progress = save_each_rank
loop.train(load_train_config(sys.argv[1]), sys.argv[2], progress=False)
"""


@pytest.mark.slow
def test_ddp_with_frozen_layers_and_a_phase_that_unfreezes(tiny_manifest, tmp_path):
    """Every Lite preset freezes: ``freeze_stem_blocks`` throughout, and here a frozen-
    backbone phase, then a phase that trains the rest. DDP hooks the parameters that need
    a gradient when it wraps: wrapped before freezing, the reducer waits for gradients
    that never come (a crash); wrapped once after, the blocks the second phase unfreezes
    are never averaged (the ranks drift apart). Both ranks must hold the same weights."""
    from wastenet.config import save_yaml
    from wastenet.models import create_model
    from wastenet.train.freeze import backbone_units

    phases = [
        {"name": "head", "epochs": 1, "lr": 3e-3, "freeze": "backbone"},
        {"name": "all", "epochs": 1, "lr": 1e-3},
    ]
    cfg = tiny_config(tiny_manifest, tmp_path, phases=phases, freeze_stem_blocks=2, calibrate=False)
    save_yaml(cfg, tmp_path / "cfg.yaml")
    (tmp_path / "driver.py").write_text(DDP_DRIVER)
    out = tmp_path / "ddp"
    done = _torchrun(str(tmp_path / "driver.py"), str(tmp_path / "cfg.yaml"), str(out))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (out / "model.safetensors").exists()
    torch.manual_seed(cfg.seed)  # the run's starting weights
    model = create_model(cfg.model, len(CLASSES), pretrained=False)
    start = {k: p.detach() for k, p in model.named_parameters()}
    units = backbone_units(model)
    names = {id(p): k for k, p in model.named_parameters()}
    stem = {names[id(p)] for unit in units[:2] for p in unit.parameters()}
    backbone = {names[id(p)] for unit in units for p in unit.parameters()}
    head = set(start) - backbone
    epochs = [{r: load_file(str(out / f"rank{r}_epoch{e}.safetensors")) for r in (0, 1)}
              for e in (1, 2)]  # fmt: skip
    for e, ranks in enumerate(epochs, 1):
        for key in start:
            assert torch.equal(ranks[0][key], ranks[1][key]), f"ranks differ: {key}, epoch {e}"
    after_head, after_all = epochs[0][0], epochs[1][0]
    assert all(torch.equal(after_head[k], start[k]) for k in backbone)  # frozen
    assert all(not torch.equal(after_head[k], start[k]) for k in head)  # trained
    assert all(torch.equal(after_all[k], start[k]) for k in stem)  # frozen throughout
    assert all(not torch.equal(after_all[k], after_head[k]) for k in backbone - stem)
