"""A momentum (EMA) copy of an encoder, as MoCo, BYOL and ALBEF keep one for their keys.

`MomentumEncoder` is an encoder (use it in `BatchKeys`, as a queue's fill, as a distillation
teacher) that owns its online encoder and moves towards it in `after_step`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from multicon.keys.base import AfterStep


def cosine_momentum(base: float, final: float, progress: float) -> float:
    """Momentum rising from ``base`` at progress 0 to ``final`` at progress 1 on a half cosine."""
    progress = min(max(progress, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2


def shared_with_copy(encoder: nn.Module) -> list[object]:
    """What an EMA copy of ``encoder`` shares instead of copying.

    * Frozen submodules: ones with parameters, none of them trainable, in eval mode (a locked
      tower's backbone). Their average is themselves, so a copy only costs memory and time.
    * Whatever a module lists in its ``momentum_shared`` attribute (a frozen `Tower`'s feature
      memo, so the copy reuses the features the online tower computed for the same inputs).

    Example:
        >>> backbone = nn.Linear(4, 4).requires_grad_(False).eval()
        >>> tower = nn.Sequential(backbone, nn.Linear(4, 2))
        >>> shared_with_copy(tower) == [backbone]
        True
    """
    shared: list[object] = []
    for module in encoder.modules():
        params = list(module.parameters())
        if params and not module.training and not any(p.requires_grad for p in params):
            shared.append(module)
        shared.extend(getattr(module, "momentum_shared", ()))
    return shared


class MomentumEncoder(AfterStep):
    """A frozen copy of ``encoder`` updated as ``θ_k ← m θ_k + (1 - m) θ_q`` after each step.

    The momentum follows `cosine_momentum` from ``base`` to ``final`` over training. Buffers
    (BatchNorm statistics) are copied, not averaged. The copy runs without gradient. Frozen
    parts of ``encoder`` are shared with it, not copied (`shared_with_copy`). The online
    encoder is held too (``online``), so the copy knows what it follows.

    Args:
        encoder: the online encoder; it must have trainable parameters (the EMA of a locked
            tower is the tower).
        momentum: the base momentum, or ``(base, final)``; a float rises to 1.

    Example:
        >>> import torch
        >>> online = torch.nn.Linear(4, 2)
        >>> ema = MomentumEncoder(online, momentum=0.9)
        >>> with torch.no_grad(): _ = online.weight.add_(1.0)
        >>> round(ema.after_step(None, progress=0.0)["momentum"], 2)
        0.9
    """

    is_ema_copy = True  # `multicon.keys.base.output_dim` reads through to the encoder

    def __init__(self, encoder: nn.Module, momentum: float | tuple[float, float] = 0.99) -> None:
        super().__init__()
        if isinstance(encoder, MomentumEncoder):
            raise TypeError("encoder is already a MomentumEncoder: give the online encoder")
        base, final = (momentum, 1.0) if isinstance(momentum, float | int) else momentum
        if not 0.0 <= base <= final <= 1.0:
            raise ValueError(
                f"momentum: need 0 <= base <= final <= 1, got base={base}, final={final}"
            )
        if not any(p.requires_grad for p in encoder.parameters()):
            raise ValueError(
                "momentum: the encoder has no trainable parameters (a locked tower?): its EMA "
                "copy would be the encoder itself; use its keys directly"
            )
        self.base, self.final = base, final
        self.online = encoder
        self.encoder = copy.deepcopy(encoder, memo={id(x): x for x in shared_with_copy(encoder)})
        for p in self.encoder.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)

    @torch.no_grad()
    def after_step(self, pending, progress: float, *, diagnostics: bool = False) -> dict:
        """EMA step towards the online encoder; logs the momentum used."""
        return {"momentum": self.update(progress)}

    @torch.no_grad()
    def update(self, progress: float) -> float:
        """EMA step towards the online encoder; returns the momentum used."""
        online = self.online
        m = cosine_momentum(self.base, self.final, progress)
        ema_params, online_params = list(self.encoder.parameters()), list(online.parameters())
        if len(ema_params) != len(online_params):
            raise ValueError("momentum encoder and online encoder have different parameters")
        pairs = [
            (e, p.detach()) for e, p in zip(ema_params, online_params, strict=True) if e is not p
        ]
        if pairs:  # shared (frozen) parameters are skipped: they are their own average
            torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - m)
        for b_ema, b in zip(self.encoder.buffers(), online.buffers(), strict=True):
            if b_ema is not b:
                b_ema.copy_(b)
        return m
