"""A FIFO queue of past keys, filled from any source (MoCo, ALBEF, cross-batch memory).

`KeyQueue` scores the keys it holds *as they were before this step* and, after the optimizer
step, enqueues this step's keys from its ``fill`` source (every process's, in rank order,
over the oldest). Chain it after the batch's keys (`Chain(BatchKeys(enc), KeyQueue(...))`, the
default of MoCo's implementation and ALBEF) or use `PositiveAndQueue` for MoCo v2's layout (each
query's own positive, then the queue). The buffers are persistent: checkpoints carry them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from multicon.dist import gather_no_grad
from multicon.keys.base import KeySource, View, output_dim
from multicon.keys.batch import BatchKeys, batch_keyset
from multicon.losses.keyset import KeySet

_DIAGNOSTIC_KEYS = 64  # enough keys for a mean cosine, few enough to cost nothing


class RingBuffer(KeySource):
    """The storage of a queue: ``size`` rows of ``dim`` and their ids, oldest overwritten."""

    def __init__(self, size: int, dim: int, *, name: str = "queue") -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"queue_size must be positive, got {size}")
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.size, self.dim, self.name = size, dim, name
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def check_batch(self, global_batch: int) -> None:
        if self.size < global_batch:
            raise ValueError(
                f"queue_size {self.size} is smaller than the global batch of {global_batch} "
                f"keys ({self.name}): each step enqueues the whole batch; raise queue_size"
            )

    def is_full(self) -> bool:
        """Whether every slot holds a row (after ``size`` rows have been enqueued)."""
        return int(self.filled) == self.size

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The queued rows and ids (order does not matter to a loss)."""
        n = int(self.filled)
        return self.keys[:n], self.ids[:n]

    def _as_keys(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored rows as the keys they are scored as: here the rows themselves, detached and
        copied, so this step scores the queue as it was before this step's enqueue."""
        return stored.detach().clone()

    def queued_keys(self, dtype: torch.dtype) -> KeySet:
        """The queue as a key set of shared keys (no positive among them)."""
        rows, ids = self.stored()
        keys = self._as_keys(rows).to(dtype)
        return KeySet(keys, ids.clone(), torch.zeros(0, dtype=torch.long, device=keys.device))

    @torch.no_grad()
    def enqueue(self, rows: torch.Tensor, ids: torch.Tensor) -> None:
        """Enqueue every process's ``rows`` and ``ids``, in rank order, over the oldest."""
        if rows.dim() != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"queue holds rows of dim {self.dim}, got shape {tuple(rows.shape)}")
        rows, ids = gather_no_grad(rows), gather_no_grad(ids)
        n = rows.shape[0]
        self.check_batch(n)
        slots = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[slots] = rows.to(self.keys.dtype)
        self.ids[slots] = ids.to(self.ids.device)
        self.ptr.copy_((self.ptr + n) % self.size)
        self.filled.copy_(torch.clamp(self.filled + n, max=self.size))

    @torch.no_grad()
    def similarity_by_age(self, keys: torch.Tensor, groups: int = 4) -> torch.Tensor:
        """Mean cosine similarity of ``keys`` to the queued keys, in ``groups`` age groups of
        equal size, newest first.

        A flat profile means old and new keys live in the same embedding; one that falls with
        age means the embedding has moved away from where the old keys were, which makes them
        easy negatives (docs/recipes/moco_cifar10.md, "Why the queue loses here").

        Example:
            >>> queue = KeyQueue(BatchKeys(torch.nn.Identity()), size=8, dim=2)
            >>> for angle in range(4):  # keys that turn 30 degrees a step
            ...     a = torch.tensor(angle * torch.pi / 6)
            ...     queue.enqueue(torch.stack([a.cos(), a.sin()]).expand(2, 2), torch.arange(2))
            >>> cos = queue.similarity_by_age(torch.tensor([[0.0, 1.0]]))  # the newest direction
            >>> [round(c, 3) for c in cos.tolist()]
            [1.0, 0.866, 0.5, 0.0]
        """
        n = int(self.filled)
        if not 1 <= groups <= n:
            raise ValueError(f"need 1 <= groups <= the {n} queued keys, got groups={groups}")
        newest_first = (self.ptr - 1 - torch.arange(n, device=self.keys.device)) % self.size
        queued = F.normalize(self._as_keys(self.keys[newest_first]).float(), dim=1)
        cos = F.normalize(keys.detach().float(), dim=1) @ queued.T
        return torch.stack([part.mean() for part in cos.tensor_split(groups, dim=1)])

    def _diagnostics(self, keys: torch.Tensor) -> dict[str, float]:
        if not self.is_full():
            return {}
        by_age = self.similarity_by_age(keys[:_DIAGNOSTIC_KEYS], min(4, self.size))
        return {f"{self.name}_cos_new": by_age[0].item(), f"{self.name}_cos_old": by_age[-1].item()}


class KeyQueue(RingBuffer):
    """A FIFO queue of past keys from ``fill``, scored as extra negatives.

    Args:
        fill: the source of the keys to enqueue: `BatchKeys` over an encoder, online (XBM) or
            a `MomentumEncoder` (MoCo, ALBEF).
        size: keys held; at least the global batch (checked when training starts).
        dim: key dimension; must be the fill encoder's output size where it declares one.
        name: prefix of the queue's logged diagnostics.

    Example:
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> queue = KeyQueue(BatchKeys(torch.nn.Linear(3, 4)), size=8, dim=4)
        >>> x = torch.randn(3, 3)
        >>> step = StepInputs(PairBatch(x, x, torch.arange(3)))
        >>> queue(View(step, reverse=False)).keys.shape     # empty before the first step
        torch.Size([0, 4])
        >>> _ = queue.after_step(step.pending[queue], progress=0.1)
        >>> queue(View(step, reverse=False)).keys.shape
        torch.Size([3, 4])
    """

    def __init__(self, fill: BatchKeys, size: int, dim: int, *, name: str = "queue") -> None:
        if not isinstance(fill, BatchKeys):
            raise TypeError(f"fill must be BatchKeys over an encoder, got {type(fill).__name__}")
        declared = output_dim(fill.encoder)
        if declared is not None and declared != dim:
            raise ValueError(f"dim {dim} does not match the fill encoder's output size {declared}")
        super().__init__(size, dim, name=name)
        self.fill = fill

    def forward(self, view: View) -> KeySet:
        fill = self.fill.embed(view)
        if fill.shape[1] != self.dim:
            raise ValueError(f"queue holds keys of dim {self.dim}, got shape {tuple(fill.shape)}")
        view.step.defer(self, (fill.detach(), view.ids))
        return self.queued_keys(fill.dtype)

    @torch.no_grad()
    def after_step(self, pending, progress: float, *, diagnostics: bool = False) -> dict:
        if pending is None:
            return {}
        keys, ids = pending
        metrics = self._diagnostics(keys) if diagnostics else {}
        self.enqueue(keys, ids)
        return metrics


class PositiveAndQueue(KeySource):
    """MoCo v2's keys: each query's own positive key, then the queue (He et al. 2020).

    Each query sees only its own key of this step, not the rest of the batch; while the queue
    is still empty (the first step), the whole global batch is scored instead, gathered, so one
    process and several give the same loss.

    Example:
        >>> enc = torch.nn.Linear(3, 4)
        >>> source = PositiveAndQueue(KeyQueue(BatchKeys(enc), size=8, dim=4))
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> x = torch.randn(3, 3)
        >>> step = StepInputs(PairBatch(x, x, torch.arange(3)))
        >>> source(View(step, reverse=False)).own_keys is None   # empty queue: the batch
        True
        >>> _ = source.queue.after_step(step.pending[source.queue], progress=0.1)
        >>> ks = source(View(step, reverse=False))
        >>> ks.own_keys.shape, ks.keys.shape
        (torch.Size([3, 4]), torch.Size([3, 4]))
    """

    def __init__(self, queue: KeyQueue) -> None:
        super().__init__()
        if not isinstance(queue, KeyQueue):
            raise TypeError(f"queue must be a KeyQueue, got {type(queue).__name__}")
        self.queue = queue

    def check_batch(self, global_batch: int) -> None:
        self.queue.check_batch(global_batch)

    def forward(self, view: View) -> KeySet:
        keys = self.queue.fill.embed(view)
        queued = self.queue(view)
        if queued.keys.shape[0] == 0:
            return batch_keyset(keys, view.ids)
        positive = torch.zeros(keys.shape[0], dtype=torch.long, device=keys.device)
        return KeySet(queued.keys, queued.key_ids, positive, own_keys=keys, own_ids=view.ids)
