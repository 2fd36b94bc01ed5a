"""Checkpoints written atomically: a crash mid-write never costs the last good checkpoint.

A checkpoint is a folder ``step-000123/`` holding ``state.pt`` (model, optimizer, scheduler,
scaler, position) and one ``rng-<rank>.pt`` per process. It is written under a temporary name and
renamed into place only when every file is complete; readers ignore temporary folders.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """This process's random states (Python, NumPy, torch CPU and CUDA) as plain tensors/tuples."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:09d}"


def temporary_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f".step-{step:09d}.tmp"


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / "state.pt").is_file()]


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def write_file_atomic(obj: Any, path: Path) -> None:
    """torch.save to ``path`` via a temporary file in the same folder and an atomic rename."""
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def begin(root: str | Path, step: int) -> Path:
    """Make an empty temporary folder for the checkpoint of ``step`` (main process only)."""
    tmp = temporary_dir(root, step)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def commit(root: str | Path, step: int, keep: int = 0) -> Path:
    """Rename the finished temporary folder into place and prune all but the newest ``keep``."""
    final = checkpoint_dir(root, step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary_dir(root, step), final)
    if keep > 0:
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load(path: str | Path, rank: int = 0) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Read ``state.pt`` and this rank's RNG state (None if the checkpoint has none for it)."""
    path = Path(path)
    state_file = path / "state.pt"
    if not state_file.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (missing {state_file.name})")
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    rng_file = path / f"rng-{rank}.pt"
    rng = torch.load(rng_file, weights_only=True) if rng_file.is_file() else None
    return state, rng
