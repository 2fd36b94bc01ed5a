"""InfoNCE: a query must find its positive key among negative keys.

    L = -log( exp(s(q, k+) / τ) / Σ_k exp(s(q, k) / τ) )

`info_nce` is a pure function of embeddings; `InfoNCE` adds the temperature (fixed, or learnable
and clamped like CLIP's logit scale) and is what models hold. Where the keys come from (the batch,
a queue, a noise distribution) is the `KeySet`'s business, not the loss's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class KeySet:
    """The keys one batch of queries is scored against.

    Args:
        keys: ``(N, D)`` keys shared by all queries, or ``(B, K, D)`` keys per query.
        key_ids: ``(N,)`` or ``(B, K)`` ids; a key whose id equals its query's id is masked out
            unless it is the positive.
        positive: ``(B,)`` index of each query's positive key in ``keys`` (along N or K).
        logit_offset: optional additive correction per key (``(N,)`` or ``(B, K)``), e.g.
            ``-log Q(key)`` for the logQ correction of frequency-biased negatives.
    """

    keys: torch.Tensor
    key_ids: torch.Tensor
    positive: torch.Tensor
    logit_offset: torch.Tensor | None = None


def _check(query: torch.Tensor, ks: KeySet, query_ids: torch.Tensor | None) -> None:
    if query.dim() != 2:
        raise ValueError(f"queries must be (B, D), got shape {tuple(query.shape)}")
    b, d = query.shape
    if ks.keys.dim() not in (2, 3) or ks.keys.shape[-1] != d:
        raise ValueError(
            f"keys must be (N, {d}) or ({b}, K, {d}) to match queries of shape {(b, d)}, "
            f"got {tuple(ks.keys.shape)}"
        )
    if ks.keys.dim() == 3 and ks.keys.shape[0] != b:
        raise ValueError(f"per-query keys have {ks.keys.shape[0]} rows for {b} queries")
    if ks.positive.shape != (b,):
        raise ValueError(f"positive must be ({b},), got {tuple(ks.positive.shape)}")
    if ks.key_ids.shape != ks.keys.shape[:-1]:
        raise ValueError(
            f"key_ids shape {tuple(ks.key_ids.shape)} does not match keys {tuple(ks.keys.shape)}"
        )
    if query_ids is not None and query_ids.shape != (b,):
        raise ValueError(f"query_ids must be ({b},), got {tuple(query_ids.shape)}")


def contrastive_logits(
    query: torch.Tensor,
    keys: KeySet,
    *,
    logit_scale: torch.Tensor | float,
    query_ids: torch.Tensor | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Logits ``(B, N)`` or ``(B, K)`` with same-id non-positive keys set to -inf.

    Computed outside autocast in float32 (float64 for float64 inputs), so bf16/fp16 training
    still scores in float32.
    """
    _check(query, keys, query_ids)
    with torch.autocast(device_type=query.device.type, enabled=False):
        dtype = torch.promote_types(query.dtype, torch.float32)  # float32, or float64 if given
        q, k = query.to(dtype), keys.keys.to(dtype)
        if normalize:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        if k.dim() == 2:
            logits = q @ k.T
        else:
            logits = torch.einsum("bd,bkd->bk", q, k)
        logits = logits * logit_scale
        if keys.logit_offset is not None:
            logits = logits + keys.logit_offset.to(dtype)
        if query_ids is not None:
            ids = keys.key_ids if keys.key_ids.dim() == 2 else keys.key_ids.unsqueeze(0)
            same = ids == query_ids.unsqueeze(1)
            same.scatter_(1, keys.positive.unsqueeze(1), False)
            logits = logits.masked_fill(same, float("-inf"))
    return logits


def info_nce(
    query: torch.Tensor,
    keys: KeySet,
    *,
    temperature: float | torch.Tensor = 0.1,
    query_ids: torch.Tensor | None = None,
    normalize: bool = True,
) -> torch.Tensor:
    """Mean InfoNCE loss of ``query`` (B, D) against ``keys``.

    Example:
        >>> import torch
        >>> q = torch.randn(4, 8)
        >>> ks = KeySet(q.clone(), torch.arange(4), torch.arange(4))
        >>> loss = info_nce(q, ks, temperature=0.1, query_ids=torch.arange(4))
        >>> bool(loss < 0.1)
        True
    """
    logits = contrastive_logits(
        query, keys, logit_scale=1.0 / temperature, query_ids=query_ids, normalize=normalize
    )
    return F.cross_entropy(logits, keys.positive)


class InfoNCE(nn.Module):
    """InfoNCE with a fixed or learnable temperature.

    A learnable temperature is stored as ``log(1/τ)`` (CLIP's logit scale) and the scale is
    clamped to ``max_logit_scale`` so it cannot run away.

    Args:
        temperature: τ, or its initial value when ``learnable``.
        learnable: learn τ by gradient.
        max_logit_scale: upper clamp on 1/τ (CLIP uses 100).
        normalize: score by cosine similarity (True) or raw dot product (word2vec).

    Example:
        >>> import torch
        >>> loss_fn = InfoNCE(temperature=0.07, learnable=True)
        >>> q, k = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = loss_fn(q, KeySet(k, torch.arange(4), torch.arange(4)), torch.arange(4))
        >>> loss.backward(); loss_fn.log_logit_scale.grad is not None
        True
    """

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learnable: bool = False,
        max_logit_scale: float = 100.0,
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if 1.0 / temperature > max_logit_scale:
            raise ValueError(
                f"temperature {temperature} is below 1/max_logit_scale = {1 / max_logit_scale}"
            )
        self.max_logit_scale = max_logit_scale
        self.normalize = normalize
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)

    @property
    def learnable(self) -> bool:
        return isinstance(self.log_logit_scale, nn.Parameter)

    def logit_scale(self) -> torch.Tensor:
        return self.log_logit_scale.float().exp().clamp(max=self.max_logit_scale)

    @property
    def temperature(self) -> float:
        return float(1.0 / self.logit_scale().detach())

    def logits(
        self, query: torch.Tensor, keys: KeySet, query_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return contrastive_logits(
            query,
            keys,
            logit_scale=self.logit_scale(),
            query_ids=query_ids,
            normalize=self.normalize,
        )

    def forward(
        self, query: torch.Tensor, keys: KeySet, query_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return F.cross_entropy(self.logits(query, keys, query_ids), keys.positive)
