"""A queue of a locked tower's backbone features, scored through its current projection."""

from __future__ import annotations

import torch

from multicon.encoders.tower import Tower
from multicon.keys.base import View
from multicon.keys.queue import RingBuffer
from multicon.losses.keyset import KeySet


class FeatureQueue(RingBuffer):
    """Past key inputs of a locked tower, held as its backbone features.

    A locked tower (`Tower` with ``frozen=True``: LiT, a frozen pretrained text model) is a
    fixed backbone followed by a trained projection. Queuing its features instead of its keys
    makes every queued key exactly what the tower gives now, with gradient into the projection:
    no momentum copy is needed and no key is stale (docs/recipes/clip_captions.md, "A queue of
    locked features"). Re-projecting the queue costs one ``(size, feature_dim) @ (feature_dim,
    key_dim)`` product a step. Chain it after the tower's batch keys:
    ``Chain(BatchKeys(tower), FeatureQueue(tower, size))``.

    Args:
        tower: the locked tower whose keys the queue holds.
        size: number of features held; at least the global batch.

    Example:
        >>> class Locked(Tower):
        ...     def __init__(self):
        ...         super().__init__(torch.nn.Linear(3, 6), feature_dim=6, embed_dim=4, frozen=True)
        ...     def features(self, x): return self.backbone(x)
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> tower, x = Locked(), torch.randn(2, 3)
        >>> queue, step = FeatureQueue(tower, size=8), StepInputs(PairBatch(x, x, torch.arange(2)))
        >>> _ = queue(View(step, reverse=False)); _ = queue.after_step(step.pending[queue], 0.1)
        >>> ks = queue(View(step, reverse=False))
        >>> bool(torch.allclose(ks.keys, tower(x))), ks.keys.requires_grad   # exact, trained
        (True, True)
    """

    def __init__(self, tower: Tower, size: int, *, name: str = "feature_queue") -> None:
        if not isinstance(tower, Tower) or not tower.frozen:
            raise ValueError(
                "tower: a FeatureQueue needs a locked tower (a multicon Tower built with "
                "frozen=True): the features of a trained backbone change, so they cannot be queued"
            )
        super().__init__(size, tower.projection.in_features, name=name)
        self.key_dim = tower.projection.out_features
        self.tower = tower

    def _as_keys(self, stored: torch.Tensor) -> torch.Tensor:
        projection = self.tower.projection
        return projection(stored.to(projection.weight.dtype, copy=True))  # a snapshot

    def forward(self, view: View) -> KeySet:
        view.step.defer(self, (view.key_inputs, view.ids))
        return self.queued_keys(self.tower.projection.weight.dtype)

    @torch.no_grad()
    def after_step(self, pending, progress: float, *, diagnostics: bool = False) -> dict:
        """Enqueue the locked features of this step's key inputs (the tower has just computed
        them: a memo hit)."""
        if pending is None:
            return {}
        inputs, ids = pending
        features = self.tower.locked_features(inputs)
        if features.shape[0] != ids.shape[0]:
            raise ValueError(f"{features.shape[0]} features for {ids.shape[0]} key ids")
        self.enqueue(features.float(), ids)
        return {}
