"""Towers of a dual encoder: a backbone's features, projected to the shared embedding size.

A frozen tower ("locked" tuning, LiT) keeps its backbone fixed and in eval mode (no dropout, no
BatchNorm statistics updates) and runs it without autograd; its projection still trains, since
a pretrained backbone's feature space is not the shared one. Its momentum copy (ALBEF-style
queues) shares the backbone and reuses its features for the same inputs: with a locked text
tower, each step runs the text backbone once, not twice.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
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
        self.feature_memo = FeatureMemo()
        self.momentum_shared = (self.feature_memo,)  # see multicon.keys.momentum.shared_with_copy
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

    def locked_features(self, inputs: Any) -> torch.Tensor:
        """A locked backbone's features of ``inputs``, without gradient: computed once per
        batch (the tower's own forward and its momentum copy reuse them)."""
        if not self.frozen:
            raise ValueError("only a frozen (locked) tower has fixed features: freeze it first")
        feats = self.feature_memo.get(inputs)
        if feats is None:
            with torch.no_grad():
                feats = self.features(inputs)
            self.feature_memo.put(inputs, feats)
        return feats

    def forward(self, inputs: Any) -> torch.Tensor:
        if not self.frozen:
            return self.projection(self.features(inputs))
        return self.projection(self.locked_features(inputs))


class FeatureMemo:
    """A locked backbone's features for the last inputs it saw.

    A hit needs the very same inputs object holding the very same tensors, none modified in
    place since (each tensor's version counter), so a reused or refilled buffer is recomputed;
    and the same inference-mode and autocast state, so features made for evaluation (inference
    tensors, or another dtype) never reach a training step. Shared between a frozen tower and
    its momentum copy, which embed the same batch each step.

    Example:
        >>> memo, x = FeatureMemo(), torch.ones(2, 3)
        >>> memo.put(x, x * 2)
        >>> memo.get(x).tolist(), memo.get(x.clone())
        ([[2.0, 2.0, 2.0], [2.0, 2.0, 2.0]], None)
        >>> _ = x.add_(1)   # changed in place: a miss
        >>> memo.get(x) is None
        True
    """

    def __init__(self) -> None:
        self._inputs: Any = None
        self._tensors: list[tuple[torch.Tensor, int]] = []
        self._context: tuple = ()
        self._features: torch.Tensor | None = None

    @staticmethod
    def _context_of(tensors: list[tuple[torch.Tensor, int]]) -> tuple:
        device = tensors[0][0].device.type if tensors else "cpu"
        autocast = torch.is_autocast_enabled(device)
        dtype = torch.get_autocast_dtype(device) if autocast else None
        return torch.is_inference_mode_enabled(), autocast, dtype

    @staticmethod
    def _tensors_of(inputs: Any) -> list[tuple[torch.Tensor, int]] | None:
        if isinstance(inputs, torch.Tensor):
            values = [inputs]
        elif isinstance(inputs, Mapping):
            values = list(inputs.values())
        else:
            return None  # inputs it cannot check: never reused
        if not all(isinstance(v, torch.Tensor) for v in values):
            return None
        return [(v, v._version) for v in values]

    def get(self, inputs: Any) -> torch.Tensor | None:
        """The stored features if ``inputs`` are the stored inputs, unchanged; else ``None``."""
        if self._features is None or inputs is not self._inputs:
            return None
        now = self._tensors_of(inputs)
        if now is None or len(now) != len(self._tensors):
            return None
        same = all(t is s and v == sv for (t, v), (s, sv) in zip(now, self._tensors, strict=True))
        return self._features if same and self._context_of(now) == self._context else None

    def put(self, inputs: Any, features: torch.Tensor) -> None:
        """Remember ``features`` for ``inputs`` (only inputs of tensors can be checked later)."""
        tensors = self._tensors_of(inputs)
        if tensors is None:
            self._inputs, self._tensors, self._features = None, [], None
        else:
            self._inputs, self._tensors, self._features = inputs, tensors, features
            self._context = self._context_of(tensors)
