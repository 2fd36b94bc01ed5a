"""The pairwise sigmoid loss: every (query, key) pair is an independent binary label.

    L = -log σ(s(q, k+) · t + b) - w Σ_{k-} log σ(-(s(q, k-) · t + b))

word2vec's skip-gram with negative sampling (Mikolov et al. 2013) is this loss over each pair's
context word and its noise words, with the raw dot product, ``t = 1``, ``b = 0``, summed over
pairs; SigLIP (Zhai et al. 2023) is the same loss over a batch of image–text pairs with a
learned ``t`` and ``b``. `sigmoid_loss` is the pure function; `SigmoidLoss` holds the scale, bias
and reduction. word2vec's layout (own positive, then noise keys) takes the hand-written backward
of `multicon.losses.sigmoid_kernel`.
"""

from __future__ import annotations

import torch
from torch import nn

from multicon.losses.keyset import KeySet, check_keyset, contrastive_logits
from multicon.losses.sigmoid_kernel import sgns_own_keys_loss


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


def sigmoid_loss(
    query: torch.Tensor,
    keys: KeySet,
    query_ids: torch.Tensor | None = None,
    *,
    logit_scale: float | torch.Tensor = 1.0,
    bias: float | torch.Tensor = 0.0,
    negative_weight: float = 1.0,
    normalize: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """The pairwise sigmoid loss of ``query`` ``(B, D)`` against ``keys``.

    Each query's positive key is a label 1, every other key a label 0 weighted
    ``negative_weight``; keys with the query's id (other than the positive) are masked out, as
    word2vec skips a noise word equal to its target. ``reduction``: ``"mean"`` or ``"sum"`` over
    queries.

    Example:
        >>> q = torch.tensor([[4.0, 0.0]])
        >>> keys = KeySet(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]]), torch.tensor([[3, 5]]),
        ...               torch.tensor([0]))
        >>> round(float(sigmoid_loss(q, keys, torch.tensor([3]))), 4)
        0.0363
    """
    if reduction not in ("mean", "sum"):
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    fast = keys.own_keys is not None and keys.logit_offset is None and not keys.positive.any()
    if fast and not normalize and isinstance(bias, float | int) and bias == 0:
        # word2vec's layout (own positive, then noise keys): the hand-written backward
        check_keyset(query, keys, query_ids)
        loss = sgns_own_keys_loss(
            query,
            keys.own_keys,
            keys.keys,
            keys.key_ids,
            query_ids,
            scale=float(logit_scale),
            negative_weight=negative_weight,
            joint=keys.joint,
        )
        return loss if reduction == "sum" else loss / len(query)
    logits = contrastive_logits(
        query, keys, logit_scale=logit_scale, query_ids=query_ids, normalize=normalize
    )
    logits = logits + bias  # a masked key stays at -inf
    positive = logits.gather(1, keys.positive.unsqueeze(1)).squeeze(1)
    # softplus(x) = -log σ(-x); softplus(-inf) = 0 drops masked keys
    negatives = softplus(logits).sum(1) - softplus(positive)
    per_query = softplus(-positive) + negative_weight * negatives
    return per_query.sum() if reduction == "sum" else per_query.mean()


class SigmoidLoss(nn.Module):
    """The pairwise sigmoid loss over a `KeySet` (word2vec's SGNS objective; SigLIP's loss).

    Args:
        reduction: ``"mean"`` or ``"sum"`` over queries. With ``"sum"`` and plain SGD the
            update is word2vec's, so its learning rate (0.025) carries over unchanged; the
            autograd step scales a summed loss by the number of processes, so that DDP's
            averaged gradient is the sum over the global batch.
        logit_scale: multiplies every score (1 in word2vec).
        bias: added to every score (0 in word2vec).
        negative_weight: weight of each negative's term: ``k / K`` when ``K`` noise keys shared
            by the batch stand in for ``k`` per positive (the same expected gradient).
        normalize: score by cosine (True) or the raw dot product (word2vec).

    Example:
        >>> q = torch.tensor([[4.0, 0.0]])
        >>> keys = KeySet(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]]), torch.tensor([[3, 5]]),
        ...               torch.tensor([0]))
        >>> round(float(SigmoidLoss()(q, keys, torch.tensor([3]))), 4)
        0.0363
    """

    def __init__(
        self,
        reduction: str = "mean",
        *,
        logit_scale: float = 1.0,
        bias: float = 0.0,
        negative_weight: float = 1.0,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if negative_weight <= 0:
            raise ValueError(f"negative_weight must be positive, got {negative_weight}")
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        self.reduction, self.scale, self.bias = reduction, logit_scale, bias
        self.negative_weight, self.normalize = negative_weight, normalize

    def forward(
        self, query: torch.Tensor, keys: KeySet, query_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return sigmoid_loss(
            query,
            keys,
            query_ids,
            logit_scale=self.scale,
            bias=self.bias,
            negative_weight=self.negative_weight,
            normalize=self.normalize,
            reduction=self.reduction,
        )
