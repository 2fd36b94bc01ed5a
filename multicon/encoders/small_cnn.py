"""A small convolutional encoder for small images (digits, glyphs, thumbnails)."""

from __future__ import annotations

import torch
from torch import nn

from multicon.encoders.heads import ProjectionHead
from multicon.hub import HubModel


class SmallConvEncoder(
    HubModel,
    tags=["image-feature-extraction"],
    pipeline_tag="image-feature-extraction",
):
    """Three conv blocks → global average pool → features; a projection head for the loss.

    ``forward`` gives the projection the loss trains on; ``features`` gives the representation
    used downstream (kNN, linear probes), as SimCLR evaluates the layer before the head.

    Args:
        in_channels: image channels.
        width: channels of the first block (doubled in each of the next two).
        proj_dim: output size of the projection head.
        proj_hidden_dim: hidden size of the 2-layer projection head.

    Example:
        >>> import torch
        >>> enc = SmallConvEncoder(in_channels=1, width=8, proj_dim=16)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> enc(x).shape, enc.features(x).shape
        (torch.Size([2, 16]), torch.Size([2, 32]))
    """

    example_input = "torch.rand(2, model.in_channels, 8, 8)"  # 8x8 digits; for the model card

    def __init__(
        self, in_channels: int = 1, width: int = 32, proj_dim: int = 64, proj_hidden_dim: int = 128
    ) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            )

        self.in_channels = in_channels
        self.backbone = nn.Sequential(
            block(in_channels, width, 1),
            block(width, 2 * width, 2),
            block(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.feature_dim = 4 * width
        self.head = ProjectionHead(self.feature_dim, proj_hidden_dim, proj_dim)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, 4 * width)``."""
        if images.dim() != 4 or images.shape[1] != self.in_channels:
            raise ValueError(
                f"expected images (B, {self.in_channels}, H, W), got shape {tuple(images.shape)}"
            )
        return self.backbone(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))
