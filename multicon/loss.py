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

from multicon.false_negatives import RelatedIds
from multicon.sgns_kernel import sgns_own_keys_loss


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
            gradient as one tensor (see `multicon.sgns_kernel`).
    """

    keys: torch.Tensor
    key_ids: torch.Tensor
    positive: torch.Tensor
    logit_offset: torch.Tensor | None = None
    own_keys: torch.Tensor | None = None
    own_ids: torch.Tensor | None = None
    joint: torch.Tensor | None = None


def _check(query: torch.Tensor, ks: KeySet, query_ids: torch.Tensor | None) -> None:
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
    _check(query, keys, query_ids)
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


def info_nce(
    query: torch.Tensor,
    keys: KeySet,
    *,
    temperature: float | torch.Tensor = 0.1,
    query_ids: torch.Tensor | None = None,
    normalize: bool = True,
    related: RelatedIds | None = None,
) -> torch.Tensor:
    """Mean InfoNCE loss of ``query`` (B, D) against ``keys`` (``related``: see
    `contrastive_logits`).

    Example:
        >>> import torch
        >>> q = torch.eye(4, 8)  # each query is its own key, orthogonal to the others
        >>> ks = KeySet(q.clone(), torch.arange(4), torch.arange(4))
        >>> loss = info_nce(q, ks, temperature=0.1, query_ids=torch.arange(4))
        >>> round(loss.item(), 5)  # -log(e^10 / (e^10 + 3))
        0.00014
    """
    logits = contrastive_logits(
        query,
        keys,
        logit_scale=1.0 / temperature,
        query_ids=query_ids,
        normalize=normalize,
        related=related,
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
        related: `RelatedIds` whose related keys are not scored as a query's negatives
            (false negatives); settable later as ``loss.related``.

    Example:
        >>> import torch
        >>> loss_fn = InfoNCE(temperature=0.07, learnable=True)
        >>> q, k = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = loss_fn(q, KeySet(k, torch.arange(4), torch.arange(4)), torch.arange(4))
        >>> loss.backward(); loss_fn.log_logit_scale.grad is not None
        True
    """

    reduction = "mean"  # over queries; the trainer reads it (`ContrastiveOutput.reduction`)

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learnable: bool = False,
        max_logit_scale: float = 100.0,
        normalize: bool = True,
        related: RelatedIds | None = None,
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
        self.related = related
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
            related=self.related,
        )

    def forward(
        self,
        query: torch.Tensor,
        keys: KeySet,
        query_ids: torch.Tensor | None = None,
        target: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The mean loss; ``target``: optional ``(B, N)`` probabilities over the keys (soft
        labels, e.g. `distillation_targets`) in place of the one-hot ``keys.positive``."""
        logits = self.logits(query, keys, query_ids)
        if target is None:
            return F.cross_entropy(logits, keys.positive)
        return soft_cross_entropy(logits, target)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-Σ target · log_softmax(logits)``; masked (-inf) logits must have
    zero target and add nothing (where ``F.cross_entropy`` would give ``0 · -inf = nan``).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -float("inf")]])
        >>> one_hot = torch.tensor([[1.0, 0.0, 0.0]])
        >>> bool(torch.isclose(soft_cross_entropy(logits, one_hot),
        ...                    F.cross_entropy(logits, torch.tensor([0]))))
        True
    """
    if target.shape != logits.shape:
        raise ValueError(
            f"target must have the logits' shape {tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    log_p = logits.log_softmax(-1).masked_fill(torch.isneginf(logits), 0.0)
    return -(target.to(log_p.dtype) * log_p).sum(-1).mean()


def distillation_targets(
    teacher_logits: torch.Tensor, positive: torch.Tensor, weight: float
) -> torch.Tensor:
    """ALBEF's momentum-distillation labels: ``(1 - weight)`` on each row's positive plus
    ``weight`` times the teacher's softmax over the same keys.

    A teacher (the momentum encoders) spreads some of the label over keys it finds as close as
    the positive: captions of other images that describe the same scene are then not pushed
    away as hard as true negatives (Li et al. 2021, ALBEF, section 3.3).

    Example:
        >>> t = distillation_targets(torch.tensor([[0.0, 0.0]]), torch.tensor([1]), 0.4)
        >>> [round(v, 2) for v in t[0].tolist()]
        [0.2, 0.8]
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"the distillation weight must be in [0, 1], got {weight}")
    target = teacher_logits.detach().float().softmax(-1) * weight
    return target.scatter_add_(
        1, positive.unsqueeze(1), target.new_full((len(target), 1), 1.0 - weight)
    )


class _Softplus(torch.autograd.Function):
    """softplus(x) = log(1 + e^x) without ``log1p``, which PyTorch runs as a scalar loop on CPU
    (measured ~8x slower than this form on 1M logits); the gradient is σ(x)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0) + torch.log(1 + torch.exp(-x.abs()))

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.sigmoid(x)


def softplus(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(x))``, stable for large ``|x|``; ``softplus(-inf) = 0``.

    Example:
        >>> [round(v, 4) for v in softplus(torch.tensor([-float("inf"), 0.0, 50.0])).tolist()]
        [0.0, 0.6931, 50.0]
    """
    return _Softplus.apply(x)


class NegativeSamplingLoss(nn.Module):
    """word2vec's logistic objective over the same `KeySet` InfoNCE scores.

        L = -log σ(s(q, k+)) - Σ_{k-} log σ(-s(q, k-))

    with ``s`` the raw dot product (``normalize=False``) scaled by ``logit_scale``. Keys masked to
    -inf (same id as the query's positive) contribute nothing, as word2vec skips a noise word equal
    to its target. With ``reduction="sum"`` and plain SGD the update is word2vec's, so its learning
    rate (0.025) carries over unchanged; on several processes the trainer sums the loss (and its
    gradient) over them too, so the step stays that of the global batch.

    Args:
        reduction: ``"mean"`` or ``"sum"`` over queries.
        logit_scale: multiplies every score (1 in word2vec).
        negative_weight: weight of each negative's term: ``k / K`` when ``K`` noise keys shared
            by the batch stand in for ``k`` per positive (the same expected gradient).

    Example:
        >>> import torch
        >>> q = torch.tensor([[4.0, 0.0]])
        >>> keys = KeySet(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]]), torch.tensor([[3, 5]]),
        ...               torch.tensor([0]))
        >>> round(float(NegativeSamplingLoss()(q, keys, torch.tensor([3]))), 4)
        0.0363
    """

    def __init__(
        self, reduction: str = "mean", logit_scale: float = 1.0, negative_weight: float = 1.0
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if negative_weight <= 0:
            raise ValueError(f"negative_weight must be positive, got {negative_weight}")
        self.reduction, self.scale, self.negative_weight = reduction, logit_scale, negative_weight

    def forward(
        self, query: torch.Tensor, keys: KeySet, query_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if keys.own_keys is not None and keys.logit_offset is None and not keys.positive.any():
            # word2vec's layout (own positive, then noise keys): the hand-written backward
            _check(query, keys, query_ids)
            loss = sgns_own_keys_loss(
                query,
                keys.own_keys,
                keys.keys,
                keys.key_ids,
                query_ids,
                scale=self.scale,
                negative_weight=self.negative_weight,
                joint=keys.joint,
            )
            return loss if self.reduction == "sum" else loss / len(query)
        logits = contrastive_logits(
            query, keys, logit_scale=self.scale, query_ids=query_ids, normalize=False
        )
        positive = logits.gather(1, keys.positive.unsqueeze(1)).squeeze(1)
        # softplus(x) = -log σ(-x); softplus(-inf) = 0 drops masked keys
        negatives = softplus(logits).sum(1) - softplus(positive)
        per_query = softplus(-positive) + self.negative_weight * negatives
        return per_query.sum() if self.reduction == "sum" else per_query.mean()
