"""Image towers for dual encoders: any backbone (torchvision, transformers, timm), a ResNet or
a small transformers ViT, then a projection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from multicon.encoders.backbones import build_backbone
from multicon.encoders.hf_models import build_transformer
from multicon.encoders.tower import Tower


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
        if norm not in ("batch", "group"):
            raise ValueError(f"unknown ResNet norm {norm!r}; choose one of ('batch', 'group')")
        built = build_backbone(arch, cifar_stem=cifar_stem, norm=norm)
        super().__init__(
            built.module, feature_dim=built.feature_dim, embed_dim=embed_dim, frozen=frozen
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)


class BackboneImageTower(Tower):
    """Images → any backbone of `multicon.encoders.backbones` → ``(B, embed_dim)``.

    Args:
        arch: ``torchvision:NAME``, ``hf:PATH``, ``timm:NAME``, or ``"hf"`` with ``hf_config``.
        embed_dim: shared embedding size.
        weights: pretrained weights (`build_backbone`).
        cifar_stem, norm: ResNets only (`build_backbone`).
        hf_config: with ``arch="hf"``: the transformers config dict.
        frozen: lock the backbone.

    ``saved_spec`` is the tower spec that rebuilds it offline (a transformers config instead of
    a path, no weights name): what a `DualEncoder` records in its config.json.

    Example:
        >>> import torch
        >>> tower = BackboneImageTower("torchvision:mobilenet_v3_small", embed_dim=16)
        >>> tower.feature_dim, tower(torch.randn(2, 3, 32, 32)).shape
        (1024, torch.Size([2, 16]))
    """

    def __init__(
        self,
        arch: str,
        *,
        embed_dim: int,
        weights: str = "",
        cifar_stem: bool = False,
        norm: str = "batch",
        hf_config: dict[str, Any] | None = None,
        frozen: bool = False,
    ) -> None:
        built = build_backbone(
            arch, weights=weights, cifar_stem=cifar_stem, norm=norm, hf_config=hf_config
        )
        super().__init__(
            built.module, feature_dim=built.feature_dim, embed_dim=embed_dim, frozen=frozen
        )
        self.feature_dim, self.pretrained_stats = built.feature_dim, built.stats
        self.saved_spec = {"kind": "backbone", "cifar_stem": cifar_stem, "norm": norm}
        self.saved_spec.update(built.saved)

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
