"""A momentum (EMA) copy of an encoder, as MoCo and BYOL keep one for their keys."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """Momentum rising from ``base`` at progress 0 to ``final`` at progress 1 on a half cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


class MomentumEncoder(nn.Module):
    """A frozen copy of ``encoder`` updated as ``θ_k ← m θ_k + (1 - m) θ_q``.

    The momentum follows `cosine_momentum` from ``base`` to ``final`` over training. Buffers
    (BatchNorm statistics) are copied, not averaged. The copy runs without gradient.

    Example:
        >>> import torch
        >>> online = torch.nn.Linear(4, 2)
        >>> ema = MomentumEncoder(online, base=0.9)
        >>> with torch.no_grad(): _ = online.weight.add_(1.0)
        >>> m = ema.update(online, progress=0.0)
        >>> round(m, 2)
        0.9
    """

    def __init__(self, encoder: nn.Module, base: float = 0.99, final: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= base <= final <= 1.0:
            raise ValueError(f"need 0 <= base <= final <= 1, got base={base}, final={final}")
        self.base, self.final = base, final
        self.encoder = copy.deepcopy(encoder)
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)

    @torch.no_grad()
    def update(self, online: nn.Module, progress: float) -> float:
        """EMA step towards ``online``; returns the momentum used."""
        m = cosine_momentum(self.base, self.final, progress)
        ema_params = list(self.encoder.parameters())
        online_params = [p.detach() for p in online.parameters()]
        if len(ema_params) != len(online_params):
            raise ValueError("momentum encoder and online encoder have different parameters")
        torch._foreach_lerp_(ema_params, online_params, 1.0 - m)
        for b_ema, b in zip(self.encoder.buffers(), online.buffers(), strict=True):
            b_ema.copy_(b)
        return m
