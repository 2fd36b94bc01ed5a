"""Where negative keys come from.

Each source turns this step's keys ``(B, D)`` and their ids into the `KeySet` the loss scores
queries against. Sources with state (the queue) change it only in `update`, which the model calls
explicitly after the optimizer step: nothing is enqueued as a side effect of scoring.
"""

from __future__ import annotations

import torch
from torch import nn

from multicon.dist import gather_no_grad, gather_with_grad, rank_offset
from multicon.loss import KeySet


class InBatchNegatives(nn.Module):
    """The keys of the whole global batch, gathered across processes with gradient (SimCLR, CLIP).

    Query ``i`` of this rank has its positive at ``offset + i`` in the gathered keys, where
    ``offset`` counts the keys of lower ranks. In one process this is the identity.

    Example:
        >>> import torch
        >>> ks = InBatchNegatives()(torch.randn(4, 8), torch.arange(4))
        >>> ks.keys.shape, ks.positive.tolist()
        (torch.Size([4, 8]), [0, 1, 2, 3])
    """

    def forward(self, keys: torch.Tensor, key_ids: torch.Tensor) -> KeySet:
        all_keys = gather_with_grad(keys)
        if all_keys.shape[0] < 2:
            raise ValueError(
                "in-batch negatives need at least 2 pairs in the global batch, got "
                f"{all_keys.shape[0]}: raise the batch size or use a queue"
            )
        all_ids = gather_no_grad(key_ids)
        positive = rank_offset(keys) + torch.arange(keys.shape[0], device=keys.device)
        return KeySet(all_keys, all_ids, positive)

    def update(self, keys: torch.Tensor, key_ids: torch.Tensor) -> None:
        """Stateless: nothing to remember."""


class MomentumQueue(nn.Module):
    """A FIFO queue of past keys and their ids that extends the in-batch keys (MoCo, ALBEF).

    Queries are scored against this step's gathered keys followed by the queue *as it was before*
    this step; `update` then enqueues the gathered keys (rank order), overwriting the oldest.
    The queue and its ids are persistent buffers, so checkpoints carry them.

    Args:
        size: number of keys held.
        dim: key dimension.
        in_batch: also use this step's other keys as negatives (with gradient if they have one).

    Example:
        >>> import torch
        >>> queue = MomentumQueue(size=8, dim=4)
        >>> k, ids = torch.randn(3, 4), torch.arange(3)
        >>> queue(k, ids).keys.shape            # empty queue: only the batch
        torch.Size([3, 4])
        >>> queue.update(k, ids); queue(k, ids).keys.shape
        torch.Size([6, 4])
    """

    def __init__(self, size: int, dim: int, *, in_batch: bool = True) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be positive, got size={size}, dim={dim}")
        self.size, self.dim, self.in_batch = size, dim, in_batch
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def _check_dim(self, keys: torch.Tensor) -> None:
        if keys.dim() != 2 or keys.shape[1] != self.dim:
            raise ValueError(
                f"queue holds keys of dim {self.dim} but got keys of shape {tuple(keys.shape)}"
            )

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The queued keys and ids (oldest first is not guaranteed; order does not matter)."""
        n = int(self.filled)
        return self.keys[:n], self.ids[:n]

    def forward(self, keys: torch.Tensor, key_ids: torch.Tensor) -> KeySet:
        self._check_dim(keys)
        queued, queued_ids = self.stored()
        queued = queued.detach().clone().to(keys.dtype)  # the pre-enqueue snapshot
        if self.in_batch:
            batch = gather_with_grad(keys)
            batch_ids = gather_no_grad(key_ids)
            positive = rank_offset(keys) + torch.arange(keys.shape[0], device=keys.device)
        else:  # MoCo v2: each query sees only its own positive and the queue
            batch, batch_ids = keys, key_ids
            positive = torch.arange(keys.shape[0], device=keys.device)
        if self.in_batch or queued.shape[0] == 0:
            all_keys = torch.cat([batch, queued])
            all_ids = torch.cat([batch_ids, queued_ids.clone()])
            return KeySet(all_keys, all_ids, positive)
        # own positive first (column 0), then the queue shared by all queries (MoCo v2)
        return KeySet(
            queued, queued_ids.clone(), torch.zeros_like(positive), own_keys=keys, own_ids=key_ids
        )

    @torch.no_grad()
    def update(self, keys: torch.Tensor, key_ids: torch.Tensor) -> None:
        """Enqueue every process's keys, in rank order, over the oldest entries."""
        self._check_dim(keys)
        keys, key_ids = gather_no_grad(keys), gather_no_grad(key_ids)
        n = keys.shape[0]
        if n > self.size:
            raise ValueError(
                f"queue of size {self.size} is smaller than the global batch of {n} keys"
            )
        slots = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[slots] = keys.to(self.keys.dtype)
        self.ids[slots] = key_ids.to(self.ids.device)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))
