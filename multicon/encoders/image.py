"""Image towers for dual encoders: a torchvision ResNet or a transformers ViT, then a projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from multicon.encoders.hf_models import build_transformer
from multicon.encoders.tower import Tower
from multicon.encoders.vision import RESNET_FEATURE_DIMS, resnet_backbone


class ResNetImageTower(Tower):
    """Images ``(B, 3, H, W)`` → ResNet features → ``(B, embed_dim)``.

    ``norm`` is "batch" (torchvision's BatchNorm) or "group" (GroupNorm, independent of the
    batch; see `resnet_backbone`).

    Example:
        >>> import torch
        >>> tower = ResNetImageTower("resnet18", embed_dim=32)
        >>> tower(torch.randn(2, 3, 64, 64)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        arch: str = "resnet18",
        *,
        embed_dim: int,
        cifar_stem: bool = False,
        norm: str = "batch",
        frozen=False,
    ) -> None:
        super().__init__(
            resnet_backbone(arch, cifar_stem=cifar_stem, norm=norm),
            feature_dim=RESNET_FEATURE_DIMS[arch],
            embed_dim=embed_dim,
            frozen=frozen,
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)


class ViTImageTower(Tower):
    """Images → a transformers ViT (CLS token or mean of patch tokens) → ``(B, embed_dim)``.

    Args:
        config: a `transformer_config` dict (``model_type`` "vit" or another image model whose
            output has ``last_hidden_state``).
        embed_dim: shared embedding size.
        pooling: "cls" or "mean".
        frozen: lock the ViT.
        pretrained: a local folder or Hub id to load weights from (safetensors only, no
            remote code; a `DualEncoder` saves the backbone's config and weights, not this path).

    Example:
        >>> import torch
        >>> cfg = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
        ...        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
        >>> ViTImageTower(cfg, embed_dim=16)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 16])
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        embed_dim: int,
        pooling: str = "cls",
        frozen: bool = False,
        pretrained: str | Path | None = None,
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise ValueError(f"ViT pooling must be 'cls' or 'mean', got {pooling!r}")
        model = build_transformer(config, pretrained)
        super().__init__(
            model, feature_dim=model.config.hidden_size, embed_dim=embed_dim, frozen=frozen
        )
        self.pooling = pooling

    def features(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.backbone(pixel_values=images).last_hidden_state
        return tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)
