"""Gathering across processes as pure functions.

`gather_with_grad` keeps the autograd graph (in-batch negatives need gradients to flow back to
the process that made each key); `gather_no_grad` is for keys that go into a queue. Both accept
batches of different sizes on different ranks and return them concatenated in rank order. In a
single process both return their input unchanged.
"""

from __future__ import annotations

import warnings

import torch
import torch.distributed as dist

_independent = False  # see `set_independent`


def set_independent(independent: bool) -> None:
    """Say whether the processes train independently (hogwild: each its own RNG stream and
    no gradient sync). Sources that otherwise draw for the global batch and keep this
    process's share (`multicon.keys.NoiseKeys`) then draw for their own pairs and exchange
    nothing."""
    global _independent
    _independent = bool(independent)


def draws_span_processes() -> bool:
    """Whether random draws are made for the global batch: several processes, not independent."""
    return world_size() > 1 and not _independent


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _sizes(x: torch.Tensor) -> list[int]:
    n = torch.tensor([x.shape[0]], device=x.device)
    out = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(out, n)
    return [int(s) for s in out]


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[0] == size:
        return x
    return torch.cat([x, x.new_zeros((size - x.shape[0], *x.shape[1:]))])


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0, differentiable w.r.t. every rank's ``x``.

    The backward pass sums each rank's gradient for the gathered tensor and returns the slice
    that belongs to this rank (``torch.distributed.nn.functional.all_gather``).
    """
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    sizes = _sizes(x)
    with (
        warnings.catch_warnings()
    ):  # deprecated in torch 2.14 but the one autograd-aware public API
        warnings.simplefilter("ignore", FutureWarning)
        parts = all_gather(_pad(x, max(sizes)))
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` concatenated along dim 0 in rank order, detached."""
    if world_size() == 1:
        return x.detach()
    sizes = _sizes(x)
    parts = [x.new_empty((max(sizes), *x.shape[1:])) for _ in sizes]
    dist.all_gather(parts, _pad(x.detach().contiguous(), max(sizes)))
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)])


def all_sizes(x: torch.Tensor) -> list[int]:
    """Every rank's ``x.shape[0]``, in rank order (``[len(x)]`` in a single process)."""
    if world_size() == 1:
        return [x.shape[0]]
    return _sizes(x)


def rank_offset(x: torch.Tensor) -> int:
    """Index of this rank's first row of ``x`` in the tensor the gathers above return."""
    if world_size() == 1:
        return 0
    return sum(_sizes(x)[: rank()])


def launch_state():
    """Accelerate's process state as the `Accelerator` will see it.

    ``PartialState`` is a singleton: created without ``cpu=True`` under ``accelerate launch
    --cpu`` (ACCELERATE_USE_CPU) it would pin the run to one process, so every caller goes
    through here, which passes the flag along.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
