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

import math

import torch
from torch import nn

from multicon.false_negatives import RelatedIds
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
    related: RelatedIds | None = None,
) -> torch.Tensor:
    """The pairwise sigmoid loss of ``query`` ``(B, D)`` against ``keys``.

    Each query's positive key is a label 1, every other key a label 0 weighted
    ``negative_weight``; keys with the query's id (other than the positive) are masked out, as
    word2vec skips a noise word equal to its target, and so are keys ``related`` relates to the
    query (`contrastive_logits`). ``reduction``: ``"mean"`` or ``"sum"`` over queries. SigLIP's
    loss (Zhai et al. 2023) is this over the batch's keys with cosine scores (``normalize``), a
    learned ``logit_scale`` and ``bias``, and ``reduction="mean"``: the sum over each query's
    keys, the mean over queries.

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
    fixed = isinstance(logit_scale, float | int) and isinstance(bias, float | int) and bias == 0
    if fast and fixed and related is None and not normalize:
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
        query,
        keys,
        logit_scale=logit_scale,
        query_ids=query_ids,
        normalize=normalize,
        related=related,
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
        logit_scale: multiplies every score (1 in word2vec; SigLIP's ``t``, 10 at the start).
        bias: added to every score (0 in word2vec; SigLIP's ``b``, -10 at the start).
        learnable: learn the scale and the bias by gradient (SigLIP): the scale is held as
            ``log_logit_scale`` (the paper's ``t'``, ``t = exp(t')``) and clamped at
            ``max_logit_scale``; the bias as ``logit_bias``.
        max_logit_scale: upper clamp on the learned scale (100, as CLIP's and open_clip's).
        negative_weight: weight of each negative's term: ``k / K`` when ``K`` noise keys shared
            by the batch stand in for ``k`` per positive (the same expected gradient).
        normalize: score by cosine (True) or the raw dot product (word2vec).
        related: `RelatedIds` whose related keys are not scored as a query's negatives
            (false negatives): such a pair is left out, neither positive nor negative.
        log_logit_scale: a 0-d tensor ``log t`` owned elsewhere to use instead of a new one (a
            `DualEncoder`'s, so the saved model keeps the scale it learned): learned if it is an
            `nn.Parameter`; ``logit_scale`` is then unused.
        shared_bias: likewise a 0-d tensor ``b`` owned elsewhere (a pretrained SigLIP's, kept
            by its `DualEncoder`): learned if it is an `nn.Parameter`; ``bias`` is then unused.

    Example:
        >>> q = torch.tensor([[4.0, 0.0]])
        >>> keys = KeySet(torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]]), torch.tensor([[3, 5]]),
        ...               torch.tensor([0]))
        >>> round(float(SigmoidLoss()(q, keys, torch.tensor([3]))), 4)
        0.0363
        >>> siglip = SigmoidLoss(logit_scale=10.0, bias=-10.0, learnable=True, normalize=True)
        >>> round(siglip.logit_scale().item(), 4), round(siglip.logit_bias.item(), 4)
        (10.0, -10.0)
    """

    def __init__(
        self,
        reduction: str = "mean",
        *,
        logit_scale: float = 1.0,
        bias: float = 0.0,
        learnable: bool = False,
        max_logit_scale: float = 100.0,
        negative_weight: float = 1.0,
        normalize: bool = False,
        related: RelatedIds | None = None,
        log_logit_scale: torch.Tensor | None = None,
        shared_bias: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        if negative_weight <= 0:
            raise ValueError(f"negative_weight must be positive, got {negative_weight}")
        if logit_scale <= 0:
            raise ValueError(f"logit_scale must be positive, got {logit_scale}")
        if logit_scale > max_logit_scale:
            raise ValueError(
                f"logit_scale {logit_scale} is above max_logit_scale {max_logit_scale}"
            )
        if not math.isfinite(bias):
            raise ValueError(f"bias must be finite, got {bias}")
        self.reduction, self.max_logit_scale = reduction, max_logit_scale
        self.negative_weight, self.normalize, self.related = negative_weight, normalize, related
        if log_logit_scale is not None:  # shared with its owner (a DualEncoder)
            if log_logit_scale.dim() != 0:
                raise ValueError("log_logit_scale must be a 0-d tensor")
            self.log_logit_scale = log_logit_scale
        elif learnable:
            self.log_logit_scale = nn.Parameter(torch.tensor(math.log(logit_scale)))
        else:
            self.log_logit_scale = None
        # a fixed scale stays a float (a setting of the run); a learned one is a tensor
        self.fixed_scale = float(logit_scale) if self.log_logit_scale is None else None
        # word2vec's fixed 0 stays a float: its fast path (the hand-written backward) needs it
        self.logit_bias = nn.Parameter(torch.tensor(float(bias))) if learnable else float(bias)
        if shared_bias is not None:  # shared with its owner (a DualEncoder)
            if shared_bias.dim() != 0:
                raise ValueError("shared_bias must be a 0-d tensor")
            del self.logit_bias
            self.logit_bias = shared_bias

    @property
    def learnable(self) -> bool:
        """Whether the bias (and the scale) learn, as SigLIP's do."""
        return isinstance(self.logit_bias, nn.Parameter)

    @property
    def has_bias(self) -> bool:
        """A bias that can offset the many negatives: learned, or fixed at a non-zero value."""
        return self.learnable or self.logit_bias != 0

    @property
    def temperature(self) -> float:
        """``1 / t``, as InfoNCE's τ (what the trainer logs and a `DualEncoder` reports)."""
        return 1.0 / float(torch.as_tensor(self.logit_scale()).detach())

    def logit_scale(self) -> torch.Tensor | float:
        """The scale ``t``: ``exp(t')`` clamped at ``max_logit_scale``, or the fixed float."""
        if self.log_logit_scale is None:
            return self.fixed_scale
        log_t = self.log_logit_scale
        log_t = log_t.to(torch.promote_types(log_t.dtype, torch.float32))  # float64 stays
        return log_t.exp().clamp(max=self.max_logit_scale)

    def forward(
        self, query: torch.Tensor, keys: KeySet, query_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        return sigmoid_loss(
            query,
            keys,
            query_ids,
            logit_scale=self.logit_scale(),
            bias=self.logit_bias,
            negative_weight=self.negative_weight,
            normalize=self.normalize,
            reduction=self.reduction,
            related=self.related,
        )
