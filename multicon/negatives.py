"""Where negative keys come from.

Each source turns this step's keys ``(B, D)`` and their ids into the `KeySet` the loss scores
queries against. Sources with state (the queue) change it only in `update`, which the model calls
explicitly after the optimizer step: nothing is enqueued as a side effect of scoring. A source
with ``queues_inputs = True`` (`FeatureQueue`) is also given the step's key inputs in `update`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from multicon.dist import (
    all_sizes,
    draws_span_processes,
    gather_no_grad,
    gather_with_grad,
    rank,
    rank_offset,
)
from multicon.loss import KeySet


def append_keys(keys: KeySet, extra: torch.Tensor, extra_ids: torch.Tensor) -> KeySet:
    """``keys`` followed by every process's ``extra`` rows (gathered with gradient) as more
    negatives; an extra row whose id equals a query's id is masked for that query.

    SimCLR's NT-Xent is symmetric InfoNCE whose keys are extended by the queries of the same view:
    2B - 2 negatives per query instead of B - 1 (`ContrastiveModel(queries_as_negatives=True)`).

    Example:
        >>> import torch
        >>> ks = InBatchNegatives()(torch.randn(3, 4), torch.arange(3))
        >>> append_keys(ks, torch.randn(3, 4), torch.arange(3)).keys.shape
        torch.Size([6, 4])
    """
    if keys.keys.dim() != 2 or keys.own_keys is not None:
        raise ValueError("extra keys can only extend keys shared by all queries, (N, D)")
    more, more_ids = gather_with_grad(extra), gather_no_grad(extra_ids)
    offset = keys.logit_offset
    if offset is not None:
        offset = torch.cat([offset, offset.new_zeros(more.shape[0])])
    return KeySet(
        torch.cat([keys.keys, more.to(keys.keys.dtype)]),
        torch.cat([keys.key_ids, more_ids.to(keys.key_ids.dtype)]),
        keys.positive,
        offset,
    )


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
            Without it (MoCo v2) a query scores its own key and the queue; while the queue is
            still empty, the keys of the global batch.

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
        self.key_dim = dim  # the dimension of the keys scored (a FeatureQueue stores features)
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("filled", torch.zeros((), dtype=torch.long))

    def _check_dim(self, keys: torch.Tensor, dim: int | None = None) -> None:
        dim = self.key_dim if dim is None else dim
        if keys.dim() != 2 or keys.shape[1] != dim:
            raise ValueError(
                f"queue holds keys of dim {dim} but got keys of shape {tuple(keys.shape)}"
            )

    def _as_keys(self, stored: torch.Tensor) -> torch.Tensor:
        """Stored rows as the keys they are scored as: here the keys themselves, detached and
        copied, so this step scores the queue as it was before this step's enqueue."""
        return stored.detach().clone()

    def is_full(self) -> bool:
        """Whether every slot holds a key (after ``size`` keys have been enqueued)."""
        return int(self.filled) == self.size

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The queued keys and ids (oldest first is not guaranteed; order does not matter)."""
        n = int(self.filled)
        return self.keys[:n], self.ids[:n]

    def forward(self, keys: torch.Tensor, key_ids: torch.Tensor) -> KeySet:
        self._check_dim(keys)
        queued, queued_ids = self.stored()
        queued = self._as_keys(queued).to(keys.dtype)
        if self.in_batch or queued.shape[0] == 0:
            # an empty queue leaves MoCo v2 only the batch: the global one, as on one process
            batch = gather_with_grad(keys)
            batch_ids = gather_no_grad(key_ids)
            positive = rank_offset(keys) + torch.arange(keys.shape[0], device=keys.device)
            all_keys = torch.cat([batch, queued])
            all_ids = torch.cat([batch_ids, queued_ids.clone()])
            return KeySet(all_keys, all_ids, positive)
        # MoCo v2: each query's own positive first (column 0), then the queue shared by all
        positive = torch.zeros(keys.shape[0], dtype=torch.long, device=keys.device)
        return KeySet(queued, queued_ids.clone(), positive, own_keys=keys, own_ids=key_ids)

    @torch.no_grad()
    def similarity_by_age(self, keys: torch.Tensor, groups: int = 4) -> torch.Tensor:
        """Mean cosine similarity of ``keys`` to the queued keys, in ``groups`` age groups of
        equal size, newest first.

        A diagnostic of how comparable the queue still is: pass this step's keys. A flat profile
        means old and new keys live in the same embedding; one that falls with age means the
        embedding has moved away from where the old keys were, which makes them easy negatives
        (docs/recipes/moco_cifar10.md, "Why the queue loses here").

        Example:
            >>> import torch
            >>> queue = MomentumQueue(size=8, dim=2)
            >>> for angle in range(4):  # keys that turn 30 degrees a step
            ...     a = torch.tensor(angle * torch.pi / 6)
            ...     queue.update(torch.stack([a.cos(), a.sin()]).expand(2, 2), torch.arange(2))
            >>> cos = queue.similarity_by_age(torch.tensor([[0.0, 1.0]]))  # the newest direction
            >>> [round(c, 3) for c in cos.tolist()]
            [1.0, 0.866, 0.5, 0.0]
        """
        self._check_dim(keys)
        n = int(self.filled)
        if not 1 <= groups <= n:
            raise ValueError(f"need 1 <= groups <= the {n} queued keys, got groups={groups}")
        newest_first = (self.ptr - 1 - torch.arange(n, device=self.keys.device)) % self.size
        queued = F.normalize(self._as_keys(self.keys[newest_first]).float(), dim=1)
        cos = F.normalize(keys.detach().float(), dim=1) @ queued.T
        return torch.stack([part.mean() for part in cos.tensor_split(groups, dim=1)])

    @torch.no_grad()
    def update(self, keys: torch.Tensor, key_ids: torch.Tensor) -> None:
        """Enqueue every process's keys, in rank order, over the oldest entries."""
        self._check_dim(keys, self.dim)
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


class FeatureQueue(MomentumQueue):
    """A queue of a locked tower's backbone features, scored through its current projection.

    A locked tower (`Tower` with ``frozen=True``: LiT, a frozen pretrained text model) is a
    fixed backbone followed by a trained projection. Queuing its features instead of its keys
    makes every queued key exactly what the tower gives now, with gradient into the projection:
    no momentum copy is needed and no key is stale. A queue of projected keys goes stale as the
    projection trains, and the positive (always this step's) becomes recognisable by how recent
    it is (docs/recipes/clip_captions.md, "A queue of locked features"). Re-projecting the
    queue costs one ``(size, feature_dim) @ (feature_dim, key_dim)`` product a step.

    Queries are scored against this step's keys (gathered with gradient), then the queue as it
    was before this step; `update` enqueues the features of the step's key inputs (every
    process's, rank order), looked up from the tower, which has just computed them.

    Args:
        tower: the locked tower whose keys the queue holds; borrowed, not a submodule, so the
            model's state dict holds its weights once.
        size: number of features held.

    Example:
        >>> import torch
        >>> from multicon.encoders.tower import Tower
        >>> class Locked(Tower):
        ...     def __init__(self):
        ...         super().__init__(torch.nn.Linear(3, 6), feature_dim=6, embed_dim=4, frozen=True)
        ...     def features(self, x): return self.backbone(x)
        >>> tower, x, ids = Locked(), torch.randn(2, 3), torch.arange(2)
        >>> queue = FeatureQueue(tower, size=8)
        >>> queue.update(tower(x), ids, inputs=x)      # stores the backbone's features
        >>> ks = queue(tower(x), ids)
        >>> ks.keys.shape, bool(torch.allclose(ks.keys[2:], tower(x)))  # queued keys are exact
        (torch.Size([4, 4]), True)
        >>> ks.keys[2:].requires_grad                  # and reach the projection's gradient
        True
    """

    queues_inputs = True

    def __init__(self, tower: nn.Module, size: int) -> None:
        if not getattr(tower, "frozen", False) or not hasattr(tower, "locked_features"):
            raise ValueError(
                "a FeatureQueue needs a locked tower (a multicon Tower built with frozen=True): "
                "the features of a trained backbone change, so they cannot be queued"
            )
        super().__init__(size, tower.projection.in_features)
        self.key_dim = tower.projection.out_features
        object.__setattr__(self, "tower", tower)  # borrowed, see the class docstring

    def _as_keys(self, stored: torch.Tensor) -> torch.Tensor:
        projection = self.tower.projection
        return projection(stored.to(projection.weight.dtype, copy=True))  # a snapshot, as above

    @torch.no_grad()
    def update(self, keys: torch.Tensor, key_ids: torch.Tensor, *, inputs) -> None:
        """Enqueue the locked features of ``inputs`` (the inputs ``keys`` were embedded from)."""
        self._check_dim(keys)
        features = self.tower.locked_features(inputs)
        if features.shape[0] != keys.shape[0]:
            raise ValueError(
                f"{features.shape[0]} inputs for {keys.shape[0]} keys: update takes the inputs "
                "this step's keys were embedded from"
            )
        super().update(features.float(), key_ids)


def noise_weights(counts: torch.Tensor, ns_exponent: float = 0.75) -> torch.Tensor:
    """word2vec's noise distribution, unnormalised: ``counts ** ns_exponent``, 0 where a count
    is 0 (float64). Raises for counts that are not a non-empty 1-d tensor of non-negative
    values, or are all zero.

    Example:
        >>> noise_weights(torch.tensor([16, 1, 0]), 0.75).tolist()
        [8.0, 1.0, 0.0]
    """
    counts = torch.as_tensor(counts, dtype=torch.float64)
    if counts.dim() != 1 or len(counts) == 0 or bool((counts < 0).any()):
        raise ValueError("counts must be a non-empty 1-d tensor of non-negative counts")
    weights = counts.pow(ns_exponent) * (counts > 0)
    if float(weights.sum()) <= 0:
        raise ValueError("the noise distribution is empty: every count is zero")
    return weights


class SampledNegatives(nn.Module):
    """Negative keys drawn from a noise distribution and embedded by the key encoder (word2vec).

    The noise distribution is ``counts ** ns_exponent`` (word2vec: unigram^0.75). Each query is
    scored against its own positive key followed by ``k`` noise keys. A draw of ``k`` noise keys
    serves ``group_size`` consecutive queries: 1 is word2vec (a draw per positive); larger groups
    embed fewer rows and score them with one batched matrix product; ``None`` shares one draw
    across the whole batch. A noise key equal to the positive is masked out by the loss (its id
    equals the query's id), as word2vec skips it.

    The key encoder is borrowed, not owned: it is not registered as a submodule, so the model's
    state dict holds its weights once (under the model's key encoder).

    Args:
        encoder: maps ``(M,)`` noise ids to ``(M, D)`` keys, normally the model's key encoder.
        counts: ``(V,)`` word counts (the noise ids are indices into it).
        k: noise keys per draw.
        ns_exponent: exponent of the counts (0.75 in word2vec; 0 is uniform, 1 unigram).
        group_size: queries sharing one draw (``None``: the whole batch). A batch that is not a
            multiple of it is split into as many near-equal groups. With several processes the
            groups and their draws are those of the global batch, so the noise is the same as on
            one process (the draws come from the global RNG, seeded alike on every process).
        embed_positives: embed each query's positive key again from its id, in the same
            encoder call as the noise: one lookup, so one sparse gradient for the table where two
            would be summed by concatenation (faster word2vec steps on CPU, see
            docs/word2vec.md). The keys passed in are then not used: only for an encoder of ids
            whose key ids are its inputs, as word2vec's output table and context words.

    Example:
        >>> import torch
        >>> table = torch.nn.Embedding(10, 4)
        >>> neg = SampledNegatives(table, torch.arange(10, 0, -1), k=3)
        >>> ks = neg(torch.randn(2, 4), torch.tensor([1, 7]))
        >>> ks.keys.shape, ks.key_ids.shape, ks.own_keys.shape, ks.positive.tolist()
        (torch.Size([2, 3, 4]), torch.Size([2, 3]), torch.Size([2, 4]), [0, 0])
        >>> SampledNegatives(table, torch.ones(10), k=3, group_size=4)(
        ...     torch.randn(8, 4), torch.arange(8)).keys.shape   # 2 groups of 4 queries
        torch.Size([2, 3, 4])
        >>> ks = SampledNegatives(table, torch.ones(10), k=3, embed_positives=True)(
        ...     None, torch.tensor([1, 7]))   # positives looked up with the noise, from their ids
        >>> ks.joint.shape, bool(torch.equal(ks.own_keys, table(torch.tensor([1, 7]))))
        (torch.Size([8, 4]), True)
    """

    def __init__(
        self,
        encoder: nn.Module,
        counts: torch.Tensor,
        *,
        k: int = 5,
        ns_exponent: float = 0.75,
        group_size: int | None = 1,
        embed_positives: bool = False,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k (negatives per query) must be >= 1, got {k}")
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {group_size}")
        weights = noise_weights(counts, ns_exponent)
        object.__setattr__(self, "encoder", encoder)  # borrowed, see the class docstring
        self.k, self.ns_exponent, self.group_size = k, ns_exponent, group_size
        self.embed_positives = embed_positives
        # draws invert the CDF by binary search (word2vec keeps a 1e8-entry table instead)
        self.register_buffer("cdf", (weights / weights.sum()).cumsum(0).float(), persistent=False)

    def sample(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """Noise ids of ``shape`` drawn from ``counts ** ns_exponent``."""
        cdf = self.cdf.to(device)
        u = torch.rand(shape, device=device) * cdf[-1]
        return torch.searchsorted(cdf, u, right=True).clamp_(max=len(cdf) - 1)

    def _draw_groups(self, key_ids: torch.Tensor) -> tuple[torch.Tensor, list[int] | None]:
        """Noise ids ``(G, k)`` of the groups this process's queries fall in, and how many of
        its queries fall in each when that is not the same for all (else ``None``).

        The draw is the global batch's: groups of ``group_size`` consecutive pairs over every
        process's pairs in rank order (near-equal groups where they do not divide), drawn from
        the global RNG, which is the same on every process. So N processes score the noise
        one process would, and their RNGs stay in step. Processes that train independently
        (hogwild, `multicon.dist.set_independent`) draw for their own pairs only.
        """
        sizes, start = [len(key_ids)], 0
        if draws_span_processes():
            sizes = all_sizes(key_ids)
            start = sum(sizes[: rank()])
        total = sum(sizes)
        end = start + len(key_ids)
        groups = -(-total // self.group_size)
        noise_ids = self.sample((groups, self.k), key_ids.device)
        small, big = divmod(total, groups)  # the first `big` groups hold one more pair

        def group_start(j: int) -> int:
            return j * small + min(j, big)

        def group_of(p: int) -> int:
            return (
                p // (small + 1)
                if p < big * (small + 1)
                else big + (p - big * (small + 1)) // small
            )

        first, last = group_of(start), group_of(end - 1)
        counts = [
            min(end, group_start(j + 1)) - max(start, group_start(j))
            for j in range(first, last + 1)
        ]
        return noise_ids[first : last + 1], None if len(set(counts)) == 1 else counts

    def forward(self, keys: torch.Tensor | None, key_ids: torch.Tensor) -> KeySet:
        b, device = len(key_ids), key_ids.device
        positive = torch.zeros(b, dtype=torch.long, device=device)
        counts = None
        if self.group_size is None:  # one draw for the batch: the same on every process
            noise_ids = self.sample((self.k,), device)
        else:
            noise_ids, counts = self._draw_groups(key_ids)
        if keys is None and not self.embed_positives:
            raise ValueError("keys are required unless the negatives embed the positives")
        joint = None
        if self.embed_positives:
            joint = self.encoder(torch.cat([key_ids, noise_ids.flatten()]))
            keys, noise = joint[:b], joint[b:]
        else:
            noise = self.encoder(noise_ids.flatten()).to(keys.dtype)
        noise = noise.view(*noise_ids.shape, -1)
        if counts is not None:  # uneven groups (a last, short batch): keys per query
            repeats = torch.tensor(counts, device=device)
            noise = noise.repeat_interleave(repeats, dim=0, output_size=b)
            noise_ids = noise_ids.repeat_interleave(repeats, dim=0, output_size=b)
            joint = None  # the noise keys are no longer rows of it
        return KeySet(noise, noise_ids, positive, own_keys=keys, own_ids=key_ids, joint=joint)

    def update(self, keys: torch.Tensor, key_ids: torch.Tensor) -> None:
        """Stateless: nothing to remember."""


class LogQCorrection(nn.Module):
    """Re-weights frequency-biased negatives (in-batch, queue) towards a target distribution.

    In-batch and queued keys are drawn from the keys' own frequency ``Q`` (for context words:
    the unigram after subsampling), not from the noise distribution ``P`` a method is defined
    with (word2vec: unigram^0.75). Adding ``log P(id) - log Q(id)`` to every key's logit turns the
    sum over the drawn keys into an importance-weighted estimate of the sum under ``P``, so the
    loss estimates the same objective (Bengio & Senécal 2008; Yi et al. 2019 use ``P`` uniform).

    Args:
        negatives: the wrapped source (`InBatchNegatives`, `MomentumQueue`).
        key_freq: ``(V,)`` ``Q``, the frequency of each id among keys.
        target_freq: ``(V,)`` ``P``; ``None`` means uniform (plain ``-log Q``).

    Example:
        >>> import torch
        >>> q = torch.tensor([0.5, 0.25, 0.25])
        >>> neg = LogQCorrection(InBatchNegatives(), q)
        >>> ks = neg(torch.randn(2, 4), torch.tensor([0, 2]))
        >>> [round(x, 3) for x in ks.logit_offset.tolist()]
        [0.693, 1.386]
    """

    def __init__(
        self,
        negatives: nn.Module,
        key_freq: torch.Tensor,
        target_freq: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        key_freq = torch.as_tensor(key_freq, dtype=torch.float64)
        if key_freq.dim() != 1 or bool((key_freq < 0).any()):
            raise ValueError("key_freq must be a 1-d tensor of non-negative frequencies")
        tiny = torch.finfo(torch.float32).tiny
        offset = -(key_freq / key_freq.sum()).clamp(min=tiny).log()
        if target_freq is not None:
            target_freq = torch.as_tensor(target_freq, dtype=torch.float64)
            if target_freq.shape != key_freq.shape:
                raise ValueError(
                    f"target_freq shape {tuple(target_freq.shape)} != key_freq shape "
                    f"{tuple(key_freq.shape)}"
                )
            offset += (target_freq / target_freq.sum()).clamp(min=tiny).log()
        self.negatives = negatives
        self.register_buffer("offset", offset.float(), persistent=False)

    def forward(self, keys: torch.Tensor, key_ids: torch.Tensor) -> KeySet:
        ks = self.negatives(keys, key_ids)
        ids = ks.key_ids.clamp(min=0)  # an empty queue slot has id -1 and is never filled here
        ks.logit_offset = self.offset.to(ids.device)[ids]
        return ks

    def update(self, keys: torch.Tensor, key_ids: torch.Tensor) -> None:
        self.negatives.update(keys, key_ids)
