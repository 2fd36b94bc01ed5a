"""Hogwild!: processes on one machine train one copy of the parameters, without gradient sync.

Each process draws its own share of the pairs, computes gradients and applies its optimizer step
straight to parameters that live in memory shared by all the processes, without locks (Recht et
al. 2011). This is how word2vec and gensim use several CPU cores: updates of a sparse model
(an embedding table touched a few rows at a time) rarely collide, and a collision only loses part
of one update. DistributedDataParallel instead all-reduces a dense gradient of every table every
step, which for word2vec costs more than the step itself.

The processes are the usual ones (``accelerate launch`` / ``torchrun``). Rank 0 moves each
parameter into an anonymous shared-memory file (``memfd_create``) that has no name in any file
system; the other ranks map it through ``/proc/<rank 0>/fd/<n>`` and rank 0 then closes it. The
memory lives while a process maps it, so a run that stops, however it stops (SIGKILL during
set-up included), leaves nothing behind: there is nothing in ``/dev/shm`` to clean up.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

PROC = Path("/proc")


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
    if not hasattr(os, "memfd_create") or not (PROC / "self" / "fd").is_dir():
        raise ValueError("hogwild shares memory through memfd_create and /proc (Linux only)")


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
    params = list(module.parameters())
    fds: list[int] = []
    paths: list[str | None] = [None] * len(params)
    if dist.get_rank() == 0:
        for i, p in enumerate(params):
            fd = os.memfd_create(f"multicon-hogwild-{i}", os.MFD_CLOEXEC)
            fds.append(fd)
            os.ftruncate(fd, p.numel() * p.element_size())
            paths[i] = f"{PROC}/{os.getpid()}/fd/{fd}"
            _map(p, paths[i]).copy_(p.detach())
    try:
        dist.broadcast_object_list(paths, src=0)
        shared = [_map(p, path) for p, path in zip(params, paths, strict=True)]
        dist.barrier()  # every rank holds its mapping: rank 0's descriptors can go
    finally:
        for fd in fds:
            os.close(fd)
    with torch.no_grad():
        for p, memory in zip(params, shared, strict=True):
            p.data = memory


def _map(p: torch.Tensor, path: str) -> torch.Tensor:
    """A tensor shaped like ``p`` backed by the shared memory file ``path``."""
    flat = torch.from_file(path, shared=True, size=p.numel(), dtype=p.dtype)
    return flat.view(p.shape)
