"""Hogwild!: processes on one machine train one copy of the parameters, without gradient sync.

Each process draws its own share of the pairs, computes gradients and applies its optimizer step
straight to parameters that live in memory shared by all the processes, without locks (Recht et
al. 2011). This is how word2vec and gensim use several CPU cores: updates of a sparse model
(an embedding table touched a few rows at a time) rarely collide, and a collision only loses part
of one update. DistributedDataParallel instead all-reduces a dense gradient of every table every
step, which for word2vec costs more than the step itself.

The processes are the usual ones (``accelerate launch`` / ``torchrun``); each parameter is moved
into a file under ``/dev/shm`` that rank 0 fills and every rank maps; the file is unlinked as
soon as all ranks hold the mapping (the memory lives until the last process exits), so a run that
stops, however it stops, leaves nothing behind once set-up is done.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

SHM = Path("/dev/shm")


def check_hogwild(device: torch.device, world_size: int) -> None:
    """Raise unless ``world_size`` processes on ``device`` can share memory (CPU, one machine)."""
    if device.type != "cpu":
        raise ValueError(f"hogwild shares CPU memory between processes; the device is {device}")
    if world_size == 1:
        return
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "0"))
    if local != world_size:
        raise ValueError(
            f"hogwild needs every process on one machine: {world_size} processes, "
            f"LOCAL_WORLD_SIZE={local or 'unset'} (launch with accelerate launch or torchrun)"
        )
    if not SHM.is_dir():
        raise ValueError(f"hogwild needs shared memory at {SHM}, which does not exist")


def share_parameters(module: nn.Module) -> None:
    """Back every parameter of ``module`` by memory shared with the other processes.

    Collective: every rank calls it with the same module structure. Rank 0's values are kept.
    In a single process (or without ``torch.distributed``) it does nothing.

    Example:
        >>> layer = torch.nn.Linear(2, 2)
        >>> share_parameters(layer)   # one process: nothing to share
        >>> layer.weight.shape
        torch.Size([2, 2])
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    tag = [secrets.token_hex(8) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(tag, src=0)
    params = list(module.parameters())
    paths = [SHM / f"multicon-hogwild-{tag[0]}-{i}" for i in range(len(params))]
    if dist.get_rank() == 0:
        for p, path in zip(params, paths, strict=True):
            _map(p, path).copy_(p.detach())
    dist.barrier()
    shared = [_map(p, path) for p, path in zip(params, paths, strict=True)]
    dist.barrier()  # every rank holds its mapping: the names can go
    if dist.get_rank() == 0:
        for path in paths:
            path.unlink()
    with torch.no_grad():
        for p, memory in zip(params, shared, strict=True):
            p.data = memory


def _map(p: torch.Tensor, path: Path) -> torch.Tensor:
    """A tensor shaped like ``p`` backed by the file ``path`` (created, sized, if missing)."""
    flat = torch.from_file(str(path), shared=True, size=p.numel(), dtype=p.dtype)
    return flat.view(p.shape)
