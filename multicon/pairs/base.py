"""What every pair source produces, and the two forms a pair source can take.

A pair is (query, key, key_id): the query must find its key among negatives, and `key_id` names
what the key *is* so that two keys with the same id are never each other's negatives.

Map-style sources (`MapPairGenerator`) return one pair per index and are fed by DataLoader
workers; batch-style sources (`BatchPairGenerator`) yield whole `PairBatch`es built with tensor
ops on the training device. The trainer accepts either.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

_MASK64 = (1 << 64) - 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch`` of a run seeded ``seed``; every draw of that epoch (order,
    views, context windows, per-sample randomness) starts from it.

    Example:
        >>> epoch_seed(0, 3), epoch_seed(1, 0)
        (3, 1000003)
    """
    return int(seed) * 1_000_003 + int(epoch)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index`` in epoch ``epoch``: a 63-bit hash (splitmix64) of
    `epoch_seed` and the index, so neighbouring samples and epochs get unrelated streams.

    Example:
        >>> sample_seed(0, 0, 5) == sample_seed(0, 0, 5) != sample_seed(0, 1, 5)
        True
    """
    return _splitmix64(_splitmix64(epoch_seed(seed, epoch) & _MASK64) ^ int(index)) >> 1


@contextmanager
def seeded_randomness(seed: int) -> Iterator[None]:
    """Run a block with the global RNGs of torch (CPU), Python and NumPy seeded from ``seed``,
    and give them back their state after: what the block draws is a function of ``seed`` alone,
    and draws outside it are not moved.

    Example:
        >>> with seeded_randomness(7):
        ...     a = torch.rand(2)
        >>> with seeded_randomness(7):
        ...     bool(torch.equal(a, torch.rand(2)))
        True
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(seed)  # the CPU generator only
        random.seed(seed)
        np.random.seed(seed & 0xFFFFFFFF)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def batch_size_of(inputs: Any) -> int:
    """Leading dimension of a tensor or of the tensors in a mapping (e.g. tokenized text)."""
    if isinstance(inputs, torch.Tensor):
        if inputs.dim() == 0:
            raise ValueError("pair inputs must have a batch dimension, got a 0-d tensor")
        return inputs.shape[0]
    if isinstance(inputs, Mapping) and inputs:
        sizes = {name: batch_size_of(value) for name, value in inputs.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"tensors in one pair input disagree on batch size: {sizes}")
        return next(iter(sizes.values()))
    raise TypeError(
        f"pair inputs must be a tensor or a non-empty mapping of tensors, got {type(inputs)!r}"
    )


def move_to(inputs: Any, device: torch.device | str, non_blocking: bool = False) -> Any:
    """Move a tensor or a mapping of tensors to `device`."""
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=non_blocking)
    if isinstance(inputs, Mapping):
        return {k: move_to(v, device, non_blocking) for k, v in inputs.items()}
    return inputs


@dataclass
class PairBatch:
    """A batch of positive pairs.

    Args:
        query: query inputs, a tensor ``(B, ...)`` or a mapping of such tensors.
        key: key inputs, same batch size as ``query``.
        key_id: ``(B,)`` integer ids of what each key is; equal ids are never negatives.

    Example:
        >>> import torch
        >>> batch = PairBatch(torch.zeros(4, 3), torch.ones(4, 3), torch.arange(4))
        >>> batch.batch_size
        4
    """

    query: Any
    key: Any
    key_id: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, torch.Tensor):
            self.key_id = torch.as_tensor(self.key_id)
        if self.key_id.dim() != 1 or self.key_id.is_floating_point():
            raise ValueError(
                "key_id must be a 1-d integer tensor, got "
                f"shape {tuple(self.key_id.shape)} dtype {self.key_id.dtype}"
            )
        nq, nk = batch_size_of(self.query), batch_size_of(self.key)
        if not nq == nk == len(self.key_id):
            raise ValueError(
                f"query, key and key_id disagree on batch size: {nq}, {nk}, {len(self.key_id)}"
            )

    @property
    def batch_size(self) -> int:
        return len(self.key_id)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> PairBatch:
        return PairBatch(
            move_to(self.query, device, non_blocking),
            move_to(self.key, device, non_blocking),
            self.key_id.to(device, non_blocking=non_blocking),
        )


class Pair(NamedTuple):
    """One positive pair, as a map-style generator returns it."""

    query: Any
    key: Any
    key_id: int


class PairGenerator(ABC):  # noqa: B024 - a marker base: the two forms below define the API
    """Base of every pair source; subclass `MapPairGenerator` or `BatchPairGenerator`."""


class MapPairGenerator(PairGenerator, Dataset):
    """Map-style pair source: ``__getitem__`` returns one `Pair`.

    Fed by DataLoader workers, so ``__getitem__`` may do CPU work (decoding, augmenting).
    Override `collate` when pairs need more than stacking (e.g. tokenizing captions).

    Draw randomness in ``__getitem__`` from the global RNGs (torch, as torchvision transforms
    do, Python's `random` or NumPy's): the `Trainer` seeds them for each pair from
    ``(seed, epoch, index)`` (`SeededPairs`), so a pair is the same on any number of processes
    and DataLoader workers, and after a resume. Draws in `collate` are not seeded so.

    Example:
        >>> import torch
        >>> class Noisy(MapPairGenerator):
        ...     def __init__(self, x): self.x = x
        ...     def __len__(self): return len(self.x)
        ...     def __getitem__(self, i):
        ...         return Pair(self.x[i] + 0.1 * torch.randn(2), self.x[i], i)
        >>> gen = Noisy(torch.randn(8, 2))
        >>> gen.collate([gen[i] for i in range(3)]).batch_size
        3
    """

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __getitem__(self, index: int) -> Pair: ...

    def collate(self, pairs: list[Pair]) -> PairBatch:
        query, key, key_id = default_collate([tuple(p) for p in pairs])
        return PairBatch(query, key, torch.as_tensor(key_id, dtype=torch.long))


class SeededPairs(Dataset):
    """A `MapPairGenerator` whose ``__getitem__(i)`` runs under `seeded_randomness` with the
    seed of ``(seed, epoch, i)``: the dataset the `Trainer`'s DataLoader reads.

    Each pair's random draws (augmentations, caption choice, noise) then depend on neither the
    process nor the DataLoader worker that makes it, nor on what was drawn before: one process
    and several draw the same pairs, and a resumed run redraws the pairs it lost. ``set_epoch``
    writes to shared memory, so DataLoader workers, persistent ones too, see it.

    Example:
        >>> class Noisy(MapPairGenerator):
        ...     def __len__(self): return 4
        ...     def __getitem__(self, i): return Pair(torch.rand(2), torch.zeros(2), i)
        >>> seeded = SeededPairs(Noisy(), seed=0)
        >>> first = seeded[2].query
        >>> _ = torch.rand(5)                       # other draws do not matter
        >>> bool(torch.equal(seeded[2].query, first))
        True
        >>> seeded.set_epoch(1); bool(torch.equal(seeded[2].query, first))
        False
    """

    def __init__(self, pairs: MapPairGenerator, seed: int) -> None:
        self.pairs, self.seed = pairs, int(seed)
        self._epoch = torch.zeros((), dtype=torch.long).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> Pair:
        with seeded_randomness(sample_seed(self.seed, int(self._epoch), index)):
            return self.pairs[index]


class BatchPairGenerator(PairGenerator):
    """Batch-style pair source: yields whole `PairBatch`es made with tensor ops.

    Subclasses implement `num_pairs` and `batches`. ``batches`` must be a pure function of
    ``(seed, epoch, rank, world_size)``: every process draws the same global order from
    `rng` and takes its own slice (`shard`), and resuming replays the same batches.

    Example:
        >>> import torch
        >>> class Jitter(BatchPairGenerator):
        ...     def __init__(self, x, seed=0): self.x, self.seed = x, seed
        ...     def num_pairs(self): return len(self.x)
        ...     def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        ...         g = self.rng(epoch)
        ...         x = self.x.to(device)
        ...         for idx in self.shard(torch.randperm(len(x), generator=g), batch_size,
        ...                               rank, world_size):
        ...             idx = idx.to(device)
        ...             yield PairBatch(x[idx] + 0.1 * torch.randn(len(idx), 2, device=device),
        ...                             x[idx], idx)
        >>> gen = Jitter(torch.randn(10, 2))
        >>> [b.batch_size for b in gen.batches(4, epoch=0, device="cpu")]
        [4, 4, 2]
    """

    seed: int = 0
    drop_last: bool = False

    @abstractmethod
    def num_pairs(self) -> int:
        """Number of pairs in one epoch (before sharding)."""

    @abstractmethod
    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[PairBatch]:
        """Yield this process's batches of ``batch_size`` pairs for ``epoch``."""

    def num_batches(self, batch_size: int, world_size: int = 1) -> int:
        """Steps per epoch when each of ``world_size`` processes takes ``batch_size`` pairs."""
        global_batch = batch_size * world_size
        n = self.num_pairs()
        return n // global_batch if self.drop_last else -(-n // global_batch)

    def rng(self, epoch: int) -> torch.Generator:
        """A CPU generator seeded by ``(seed, epoch)``, identical on every process."""
        return torch.Generator().manual_seed(epoch_seed(self.seed, epoch))

    def global_batches(
        self, order: torch.Tensor, batch_size: int, rank: int, world_size: int
    ) -> Iterator[tuple[torch.Tensor, slice]]:
        """Split a global order into global batches; yield each with this rank's slice of it.

        Use it to draw per-pair randomness for the whole global batch and keep your slice, so
        that N processes see exactly the pairs one process would. A last global batch too small
        to give every rank a pair is dropped so that every process takes the same steps.
        """
        global_batch = batch_size * world_size
        for step in range(self.num_batches(batch_size, world_size)):
            chunk = order[step * global_batch : (step + 1) * global_batch]
            if len(chunk) < world_size:
                return
            per_rank = -(-len(chunk) // world_size)
            yield chunk, slice(rank * per_rank, (rank + 1) * per_rank)

    def shard(
        self, order: torch.Tensor, batch_size: int, rank: int, world_size: int
    ) -> Iterator[torch.Tensor]:
        """This rank's indices of each global batch (see `global_batches`)."""
        for chunk, mine in self.global_batches(order, batch_size, rank, world_size):
            yield chunk[mine]
