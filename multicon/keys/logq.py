"""The logQ correction of frequency-biased keys (in-batch, queued) towards a target distribution."""

from __future__ import annotations

import torch

from multicon.keys.base import KeySource, View
from multicon.losses.keyset import KeySet


class LogQCorrection(KeySource):
    """Adds ``log P(id) - log Q(id)`` to the logit of every key ``source`` gives.

    In-batch and queued keys are drawn from the keys' own frequency ``Q`` (for context words:
    the unigram after subsampling), not from the noise distribution ``P`` a method is defined
    with (word2vec: unigram^0.75). The offset turns the sum over the drawn keys into an
    importance-weighted estimate of the sum under ``P``, so the loss estimates the same objective
    (Bengio & Senécal 2008; Yi et al. 2019 use ``P`` uniform).

    Args:
        source: the wrapped key source (`BatchKeys`, a `Chain` with a `KeyQueue`).
        key_freq: ``(V,)`` ``Q``, the frequency of each id among keys.
        target_freq: ``(V,)`` ``P``; ``None`` means uniform (plain ``-log Q``).

    Example:
        >>> from multicon.keys.batch import BatchKeys
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> freq = torch.tensor([0.5, 0.25, 0.25])
        >>> source = LogQCorrection(BatchKeys(torch.nn.Embedding(3, 4)), freq)
        >>> ids = torch.tensor([0, 2])
        >>> ks = source(View(StepInputs(PairBatch(ids, ids, ids)), reverse=False))
        >>> [round(x, 3) for x in ks.logit_offset.tolist()]
        [0.693, 1.386]
    """

    def __init__(
        self, source: KeySource, key_freq: torch.Tensor, target_freq: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        if not isinstance(source, KeySource):
            raise TypeError(f"source must be a KeySource, got {type(source).__name__}")
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
        self.source = source
        self.register_buffer("offset", offset.float(), persistent=False)

    def check_batch(self, global_batch: int) -> None:
        self.source.check_batch(global_batch)

    def forward(self, view: View) -> KeySet:
        ks = self.source(view)
        if ks.own_keys is not None:
            raise ValueError("LogQCorrection corrects shared keys, not a query's own positive")
        ids = ks.key_ids.clamp(min=0)  # an empty queue slot has id -1 and is never scored
        ks.logit_offset = self.offset.to(ids.device)[ids]
        return ks
