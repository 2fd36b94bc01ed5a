"""Projection heads: the MLP between a backbone's features and the contrastive loss."""

from __future__ import annotations

from torch import nn


class ProjectionHead(nn.Sequential):
    """``num_layers`` linear layers, with BatchNorm + ReLU between them.

    SimCLR: ``ProjectionHead(512, 2048, 128, num_layers=2)``; MoCo v2: same without BatchNorm;
    MoCo v3: ``num_layers=3, last_batch_norm=True`` (and a 2-layer predictor on the query side).

    Args:
        in_dim: backbone feature size.
        hidden_dim: width of the hidden layers.
        out_dim: embedding size the loss sees.
        num_layers: number of linear layers (1 = a linear projection).
        batch_norm: BatchNorm after each hidden linear layer.
        last_batch_norm: affine-free BatchNorm on the output (MoCo v3, BYOL-style heads).

    Example:
        >>> import torch
        >>> head = ProjectionHead(16, 32, 8)
        >>> head(torch.randn(4, 16)).shape
        torch.Size([4, 8])
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        *,
        num_layers: int = 2,
        batch_norm: bool = True,
        last_batch_norm: bool = False,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"a projection head needs at least 1 layer, got {num_layers}")
        layers: list[nn.Module] = []
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            last = i == num_layers - 1
            layers.append(nn.Linear(d_in, d_out, bias=not (batch_norm and not last)))
            if not last:
                if batch_norm:
                    layers.append(nn.BatchNorm1d(d_out))
                layers.append(nn.ReLU(inplace=True))
        if last_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        super().__init__(*layers)
