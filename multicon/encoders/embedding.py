"""Embedding tables: token ids → vectors, with sparse gradients for large vocabularies."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EmbeddingTable(nn.Module):
    """A ``(num_embeddings, dim)`` table looked up by id.

    With ``sparse=True`` the backward pass returns a sparse gradient holding only the rows a batch
    touched, so an optimizer that accepts sparse gradients (``torch.optim.SGD``,
    ``SparseAdam``) updates those rows and nothing else, as word2vec does.

    Args:
        num_embeddings: vocabulary size.
        dim: vector dimension.
        init: ``"uniform"`` (word2vec's input vectors, ``U(-0.5/dim, 0.5/dim)``) or ``"zeros"``
            (word2vec's output vectors).
        sparse: sparse gradients.

    Example:
        >>> table = EmbeddingTable(10, 4)
        >>> table(torch.tensor([1, 2, 1])).shape
        torch.Size([3, 4])
    """

    def __init__(
        self, num_embeddings: int, dim: int, *, init: str = "uniform", sparse: bool = True
    ) -> None:
        super().__init__()
        if num_embeddings < 1 or dim < 1:
            raise ValueError(f"num_embeddings and dim must be >= 1, got {num_embeddings} and {dim}")
        if init not in ("uniform", "zeros"):
            raise ValueError(f"init must be 'uniform' or 'zeros', got {init!r}")
        self.sparse = sparse
        self.weight = nn.Parameter(torch.empty(num_embeddings, dim))
        with torch.no_grad():
            if init == "uniform":
                self.weight.uniform_(-0.5 / dim, 0.5 / dim)
            else:
                self.weight.zero_()

    @property
    def num_embeddings(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.is_floating_point():
            raise TypeError(f"embedding ids must be integers, got {ids.dtype}")
        return F.embedding(ids, self.weight, sparse=self.sparse)
