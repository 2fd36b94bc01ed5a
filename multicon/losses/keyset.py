"""The keys a batch of queries is scored against, and the scores with their id masks.

A `KeySet` is what every key source (`multicon.keys`) returns and every loss (`multicon.losses`)
takes: the loss knows nothing of where the keys came from. `contrastive_logits` scores queries
against a key set and masks, by id, the keys that must not count as negatives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from multicon.false_negatives import RelatedIds


@dataclass
class KeySet:
    """The keys one batch of queries is scored against.

    Args:
        keys: ``(N, D)`` keys shared by all queries, or ``(G, K, D)`` keys per group of
            consecutive queries: ``G`` divides ``B`` and query ``i`` is scored against group
            ``i // (B / G)`` (``G = B``: keys per query; word2vec's noise shared by ``B / G``
            pairs is one batched matrix product).
        key_ids: ``(N,)`` or ``(G, K)`` ids; a key whose id equals its query's id is masked out
            unless it is the positive.
        positive: ``(B,)`` index of each query's positive key in ``keys`` (along N or K).
        logit_offset: optional additive correction per key (``(N,)`` or ``(G, K)``), e.g.
            ``-log Q(key)`` for the logQ correction of frequency-biased negatives.
        own_keys: optional ``(B, D)``: one more key per query, scored by that query only and
            placed in column 0 before ``keys`` (MoCo v2: each query's positive, then the queue;
            word2vec: each pair's context word, then its noise words) without copying shared
            keys per query; ``positive`` and ``logit_offset`` then index/cover the ``1 + N``
            (or ``1 + K``) columns and ``keys`` only.
        own_ids: ``(B,)`` ids of ``own_keys`` (required with them).
        joint: optional: the one tensor (one embedding lookup) whose first ``B`` rows are
            ``own_keys`` and the rest ``keys``, both views of it; word2vec's loss then takes its
            gradient as one tensor (see `multicon.losses.sigmoid_kernel`).
    """

    keys: torch.Tensor
    key_ids: torch.Tensor
    positive: torch.Tensor
    logit_offset: torch.Tensor | None = None
    own_keys: torch.Tensor | None = None
    own_ids: torch.Tensor | None = None
    joint: torch.Tensor | None = None


def check_keyset(query: torch.Tensor, ks: KeySet, query_ids: torch.Tensor | None) -> None:
    if query.dim() != 2:
        raise ValueError(f"queries must be (B, D), got shape {tuple(query.shape)}")
    b, d = query.shape
    if ks.keys.dim() not in (2, 3) or ks.keys.shape[-1] != d:
        raise ValueError(
            f"keys must be (N, {d}) or (G, K, {d}) to match queries of shape {(b, d)}, "
            f"got {tuple(ks.keys.shape)}"
        )
    if ks.keys.dim() == 3 and (ks.keys.shape[0] < 1 or b % ks.keys.shape[0]):
        raise ValueError(
            f"grouped keys have {ks.keys.shape[0]} groups, which does not divide {b} queries"
        )
    if ks.positive.shape != (b,):
        raise ValueError(f"positive must be ({b},), got {tuple(ks.positive.shape)}")
    if ks.key_ids.shape != ks.keys.shape[:-1]:
        raise ValueError(
            f"key_ids shape {tuple(ks.key_ids.shape)} does not match keys {tuple(ks.keys.shape)}"
        )
    if query_ids is not None and query_ids.shape != (b,):
        raise ValueError(f"query_ids must be ({b},), got {tuple(query_ids.shape)}")
    if ks.own_keys is not None:
        if ks.own_keys.shape != (b, d):
            raise ValueError(
                f"own_keys must be ({b}, {d}) for queries of shape {(b, d)}, got "
                f"{tuple(ks.own_keys.shape)}"
            )
        if ks.own_ids is None or ks.own_ids.shape != (b,):
            raise ValueError(f"own_keys need own_ids of shape ({b},)")


def _per_query(per_key: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """``(N,)`` shared or ``(G, K)`` grouped key values as ``(B, N)`` / ``(B, K)`` rows."""
    if per_key is None:
        return None
    if per_key.dim() == 1:
        return per_key.unsqueeze(0).expand(b, -1)
    g = per_key.shape[0]
    return per_key if g == b else per_key.repeat_interleave(b // g, dim=0)


def contrastive_logits(
    query: torch.Tensor,
    keys: KeySet,
    *,
    logit_scale: torch.Tensor | float,
    query_ids: torch.Tensor | None = None,
    normalize: bool = True,
    related: RelatedIds | None = None,
) -> torch.Tensor:
    """Logits ``(B, N)`` or ``(B, K)`` with same-id non-positive keys set to -inf, and, with
    ``related`` (and ``query_ids``), the non-positive keys whose ids it relates to the query's.

    Computed outside autocast in float32 (float64 for float64 inputs), so bf16/fp16 training
    still scores in float32.
    """
    check_keyset(query, keys, query_ids)
    with torch.autocast(device_type=query.device.type, enabled=False):
        dtype = torch.promote_types(query.dtype, torch.float32)  # float32, or float64 if given
        q, k = query.to(dtype), keys.keys.to(dtype)
        if normalize:
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        b = len(q)
        if k.dim() == 2:
            logits = q @ k.T
        else:  # G groups of B / G queries, each against its group's K keys: one bmm
            g = k.shape[0]
            logits = torch.bmm(q.view(g, b // g, -1), k.transpose(1, 2)).reshape(b, -1)
        offset = _per_query(keys.logit_offset, b)
        ids = _per_query(keys.key_ids, b)
        if keys.own_keys is not None:
            own = keys.own_keys.to(dtype)
            own = F.normalize(own, dim=-1) if normalize else own
            logits = torch.cat([(q * own).sum(-1, keepdim=True), logits], dim=1)
            offset = None if offset is None else F.pad(offset.to(dtype), (1, 0))
            ids = torch.cat([keys.own_ids.unsqueeze(1), ids], dim=1)
        logits = logits * logit_scale
        if offset is not None:
            logits = logits + offset.to(dtype)
        if query_ids is not None:
            same = ids == query_ids.unsqueeze(1)
            if related is not None:
                same |= related.mask(query_ids, ids)
            same.scatter_(1, keys.positive.unsqueeze(1), False)
            logits = logits.masked_fill(same, float("-inf"))
    return logits
