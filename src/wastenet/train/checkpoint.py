"""Resumable training state without pickles: weights and Adam moments in safetensors,
positions and history in JSON. The shipped bundle carries no optimiser state."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from wastenet.errors import WasteNetError

STATE_FILE = "state.json"
OPTIM_FILE = "optimizer.safetensors"


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    sd = optimizer.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            tensors[f"{idx}.{key}"] = (
                value.detach().cpu().contiguous() if torch.is_tensor(value) else torch.tensor(value)
            )
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"param_groups": json.dumps(sd["param_groups"])})
    os.replace(tmp, path)


def load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        groups = json.loads(handle.metadata()["param_groups"])
    tensors = load_file(str(path))
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_state(run_dir: Path, state: dict) -> None:
    _atomic_write_text(run_dir / STATE_FILE, json.dumps(state, indent=2))


def load_state(run_dir: Path) -> dict:
    path = run_dir / STATE_FILE
    if not path.exists():
        raise WasteNetError(f"{run_dir}: nothing to resume (no {STATE_FILE})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise WasteNetError(f"{path}: damaged resume state ({exc})") from exc
