"""Keys drawn from a noise distribution, embedded by the key encoder (word2vec's negatives)."""

from __future__ import annotations

import torch
from torch import nn

from multicon.dist import all_sizes, draws_span_processes, rank
from multicon.keys.base import KeySource, View
from multicon.losses.keyset import KeySet


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


class NoiseKeys(KeySource):
    """Each query's own positive key, then ``k`` noise keys drawn from ``counts ** ns_exponent``.

    A draw of ``k`` noise keys serves ``group_size`` consecutive queries: 1 is word2vec (a draw
    per positive); larger groups embed fewer rows and score them with one batched matrix
    product; ``None`` shares one draw across the whole batch. A noise key equal to the positive
    is masked out by the loss (its id equals the query's id), as word2vec skips it.

    Args:
        encoder: maps ``(M,)`` ids to ``(M, D)`` keys (word2vec's output table).
        counts: ``(V,)`` counts of the ids (the noise ids are indices into it).
        k: noise keys per draw.
        ns_exponent: exponent of the counts (0.75 in word2vec; 0 is uniform, 1 unigram).
        group_size: queries sharing one draw (``None``: the whole batch). A batch that is not a
            multiple of it is split into as many near-equal groups. With several processes the
            groups and their draws are those of the global batch, so the noise is the same as on
            one process (the draws come from the global RNG, seeded alike on every process).
        joint_lookup: the key inputs are ids of ``encoder``: embed the positives in the same
            call as the noise, so the table gets one sparse gradient where two would be summed
            by concatenation (faster word2vec steps on CPU, see docs/word2vec.md). ``False``
            embeds the positives from the key inputs on their own.

    Example:
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> table = torch.nn.Embedding(10, 4)
        >>> ids = torch.tensor([1, 7])
        >>> view = View(StepInputs(PairBatch(torch.tensor([0, 2]), ids, ids)), reverse=False)
        >>> ks = NoiseKeys(table, torch.arange(10, 0, -1), k=3)(view)
        >>> ks.keys.shape, ks.own_keys.shape, ks.joint.shape
        (torch.Size([2, 3, 4]), torch.Size([2, 4]), torch.Size([8, 4]))
    """

    def __init__(
        self,
        encoder: nn.Module,
        counts: torch.Tensor,
        *,
        k: int = 5,
        ns_exponent: float = 0.75,
        group_size: int | None = 1,
        joint_lookup: bool = True,
    ) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k (noise keys per draw) must be >= 1, got {k}")
        if group_size is not None and group_size < 1:
            raise ValueError(f"group_size must be >= 1 or None, got {group_size}")
        weights = noise_weights(counts, ns_exponent)
        self.encoder = encoder
        self.k, self.ns_exponent, self.group_size = k, ns_exponent, group_size
        self.joint_lookup = joint_lookup
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
            if p < big * (small + 1):
                return p // (small + 1)
            return big + (p - big * (small + 1)) // small

        first, last = group_of(start), group_of(end - 1)
        counts = [
            min(end, group_start(j + 1)) - max(start, group_start(j))
            for j in range(first, last + 1)
        ]
        return noise_ids[first : last + 1], None if len(set(counts)) == 1 else counts

    def forward(self, view: View) -> KeySet:
        key_ids = view.ids
        b, device = len(key_ids), key_ids.device
        positive = torch.zeros(b, dtype=torch.long, device=device)
        counts = None
        if self.group_size is None:  # one draw for the batch: the same on every process
            noise_ids = self.sample((self.k,), device)
        else:
            noise_ids, counts = self._draw_groups(key_ids)
        joint = None
        if self.joint_lookup:
            inputs = view.key_inputs
            if not isinstance(inputs, torch.Tensor) or inputs.shape != (b,):
                raise ValueError("joint_lookup needs key inputs that are (B,) ids of the encoder")
            joint = self.encoder(torch.cat([inputs, noise_ids.flatten()]))
            keys, noise = joint[:b], joint[b:]
        else:
            keys = view.embed_keys(self.encoder)
            noise = self.encoder(noise_ids.flatten()).to(keys.dtype)
        noise = noise.view(*noise_ids.shape, -1)
        if counts is not None:  # uneven groups (a last, short batch): keys per query
            repeats = torch.tensor(counts, device=device)
            noise = noise.repeat_interleave(repeats, dim=0, output_size=b)
            noise_ids = noise_ids.repeat_interleave(repeats, dim=0, output_size=b)
            joint = None  # the noise keys are no longer rows of it
        return KeySet(noise, noise_ids, positive, own_keys=keys, own_ids=key_ids, joint=joint)
