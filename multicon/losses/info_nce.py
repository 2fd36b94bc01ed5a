"""InfoNCE: a query must find its positive key among negative keys (van den Oord et al. 2018).

    L = -log( exp(s(q, k+) / τ) / Σ_k exp(s(q, k) / τ) )

`info_nce` is a pure function of embeddings, a `KeySet` (its id masks) and a temperature;
`InfoNCE` adds the temperature (fixed, or learnable and clamped as CLIP clamps its logit scale)
and is what models hold. The loss is a mean over queries (``reduction = "mean"``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from multicon.false_negatives import RelatedIds
from multicon.losses.keyset import KeySet, contrastive_logits


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
    """InfoNCE with a fixed or learnable temperature; a mean over queries.

    A learnable temperature is stored as ``log(1/τ)`` (CLIP's logit scale) and the scale is
    clamped to ``max_logit_scale`` so it cannot run away.

    Args:
        temperature: τ, or its initial value when ``learnable``.
        learnable: learn τ by gradient.
        max_logit_scale: upper clamp on 1/τ (CLIP uses 100).
        normalize: score by cosine similarity (True) or raw dot product (word2vec).
        related: `RelatedIds` whose related keys are not scored as a query's negatives
            (false negatives).
        log_logit_scale: a 0-d tensor ``log(1/τ)`` owned elsewhere to use instead of a new one
            (a `DualEncoder`'s, so the saved model keeps the temperature it learned): learned
            if it is an `nn.Parameter`; ``temperature`` and ``learnable`` are then unused.

    Example:
        >>> import torch
        >>> loss_fn = InfoNCE(temperature=0.07, learnable=True)
        >>> q, k = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = loss_fn(q, KeySet(k, torch.arange(4), torch.arange(4)), torch.arange(4))
        >>> loss.backward(); loss_fn.log_logit_scale.grad is not None
        True
    """

    reduction = "mean"

    def __init__(
        self,
        temperature: float = 0.1,
        *,
        learnable: bool = False,
        max_logit_scale: float = 100.0,
        normalize: bool = True,
        related: RelatedIds | None = None,
        log_logit_scale: torch.Tensor | None = None,
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
        if log_logit_scale is not None:  # shared with its owner (a DualEncoder)
            if log_logit_scale.dim() != 0:
                raise ValueError("log_logit_scale must be a 0-d tensor")
            if isinstance(log_logit_scale, nn.Parameter):
                self.log_logit_scale = log_logit_scale
            else:
                self.register_buffer("log_logit_scale", log_logit_scale)
            return
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
