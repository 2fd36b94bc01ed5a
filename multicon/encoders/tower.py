"""Towers of a dual encoder: a backbone's features, projected to the shared embedding size.

A frozen tower ("locked" tuning, LiT) keeps its backbone fixed and in eval mode (no dropout, no
BatchNorm statistics updates) and runs it without autograd; its projection still trains, since
a pretrained backbone's feature space is not the shared one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class Tower(nn.Module, ABC):
    """``backbone`` features → ``Linear`` → ``(B, embed_dim)``.

    Subclasses set ``self.backbone`` and implement `features`. ``frozen=True`` locks the backbone.

    Example:
        >>> import torch
        >>> class Mean(Tower):
        ...     def __init__(self):
        ...         super().__init__(nn.Linear(3, 5), feature_dim=5, embed_dim=4, frozen=True)
        ...     def features(self, x): return self.backbone(x)
        >>> tower = Mean()
        >>> tower(torch.randn(2, 3)).shape, tower.backbone.weight.requires_grad
        (torch.Size([2, 4]), False)
    """

    def __init__(
        self, backbone: nn.Module, *, feature_dim: int, embed_dim: int, frozen: bool = False
    ) -> None:
        super().__init__()
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be positive, got {embed_dim}")
        self.backbone = backbone
        self.projection = nn.Linear(feature_dim, embed_dim, bias=False)
        self.frozen = False
        if frozen:
            self.freeze()

    def freeze(self) -> None:
        """Lock the backbone: no gradients, eval mode from now on."""
        self.frozen = True
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()

    def train(self, mode: bool = True) -> Tower:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    @abstractmethod
    def features(self, inputs: Any) -> torch.Tensor:
        """Backbone features ``(B, feature_dim)``."""

    def forward(self, inputs: Any) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            feats = self.features(inputs)
        return self.projection(feats)
