"""This step's keys from an encoder, gathered across processes with gradient (SimCLR, CLIP)."""

from __future__ import annotations

import torch
from torch import nn

from multicon.dist import gather_no_grad, gather_with_grad, rank_offset
from multicon.keys.base import KeySource, View
from multicon.losses.keyset import KeySet


def batch_keyset(keys: torch.Tensor, key_ids: torch.Tensor) -> KeySet:
    """Every process's ``keys`` (with gradient) and ids; query ``i`` of this rank has its
    positive at ``offset + i``, ``offset`` counting the keys of lower ranks.

    Example:
        >>> ks = batch_keyset(torch.randn(4, 8), torch.arange(4))
        >>> ks.keys.shape, ks.positive.tolist()
        (torch.Size([4, 8]), [0, 1, 2, 3])
    """
    all_keys = gather_with_grad(keys)
    if all_keys.shape[0] < 2:
        raise ValueError(
            "in-batch negatives need at least 2 pairs in the global batch, got "
            f"{all_keys.shape[0]}: raise the batch size or use a queue"
        )
    positive = rank_offset(keys) + torch.arange(keys.shape[0], device=keys.device)
    return KeySet(all_keys, gather_no_grad(key_ids), positive)


class BatchKeys(KeySource):
    """The keys ``encoder`` gives this step's key inputs, gathered with gradient: each query's
    positive and the rest of the global batch as its negatives.

    ``encoder`` may be an online encoder (its keys keep their gradient) or a `MomentumEncoder`
    (MoCo: EMA keys, no gradient).

    Example:
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> x = torch.randn(4, 3)
        >>> view = View(StepInputs(PairBatch(x, x, torch.arange(4))), reverse=False)
        >>> BatchKeys(torch.nn.Linear(3, 2))(view).keys.shape
        torch.Size([4, 2])
    """

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"encoder must be an nn.Module, got {type(encoder).__name__}")
        self.encoder = encoder

    def embed(self, view: View) -> torch.Tensor:
        """This process's keys ``(B, D)`` for the view's key inputs."""
        return view.embed_keys(self.encoder)

    def forward(self, view: View) -> KeySet:
        return batch_keyset(self.embed(view), view.ids)
