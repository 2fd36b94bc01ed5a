"""Image encoders for SimCLR/MoCo: any backbone (`multicon.encoders.backbones`) + a projection
head; ResNets optionally with the CIFAR stem."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multicon.encoders.backbones import (
    backbone_label,
    build_backbone,
    cifar_stem_of,
    has_resnet_stem,
)
from multicon.encoders.heads import ProjectionHead
from multicon.hub import HubModel

# the feature sizes of common ResNets, for reference: backbones find theirs from the model
RESNET_FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


RESNET_NORMS = ("batch", "group")


def resnet_backbone(
    arch: str = "resnet18", *, cifar_stem: bool = False, norm: str = "batch"
) -> nn.Module:
    """A torchvision ResNet without its classifier: images ``(B, 3, H, W)`` → ``(B, F)``.

    The CIFAR stem (SimCLR's choice for 32×32 images) replaces the 7×7 stride-2 conv and the
    max-pool by one 3×3 stride-1 conv, so small images keep their resolution.
    ``norm="group"`` puts GroupNorm (32 groups; Wu & He 2018) where torchvision has
    BatchNorm: each image is normalised on its own, so nothing depends on the batch, which
    matters at batches of a few images and for keys queued from different batches.
    Any torchvision ResNet-family name works (``resnext50_32x4d``, ``wide_resnet50_2``); the
    feature size is the removed classifier's input size (`RESNET_FEATURE_DIMS` for common ones).

    Example:
        >>> import torch
        >>> net = resnet_backbone("resnet18", cifar_stem=True, norm="group")
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """
    if norm not in RESNET_NORMS:
        raise ValueError(f"unknown ResNet norm {norm!r}; choose one of {RESNET_NORMS}")
    return build_backbone(arch, cifar_stem=cifar_stem, norm=norm).module


class ImageEncoder(
    HubModel, tags=["image-feature-extraction"], pipeline_tag="image-feature-extraction"
):
    """Backbone + projection head: the image side of SimCLR/MoCo.

    ``forward(x)`` gives what the contrastive loss sees (the projection); MoCo v3's predictor
    is the method's (`multicon.methods.moco_v3`), not the encoder's. ``features(x)`` gives the
    backbone features that kNN and
    linear probes evaluate. Saved with ``save_pretrained`` (model.safetensors + config.json) and
    rebuilt with ``ImageEncoder.from_pretrained(folder)``.

    Args:
        arch: the backbone (`multicon.encoders.backbones`): ``resnet18``,
            ``torchvision:convnext_tiny``, ``hf:PATH``, ``timm:NAME``; config.json records
            ``"hf"`` with ``hf_config`` in place of a path.
        cifar_stem: ResNets: 3×3 stride-1 stem without max-pool, for 32×32 images. ``None``:
            on for a ResNet trained from scratch, off for others (pretrained weights keep their
            stem); config.json records which.
        head_hidden_dim, out_dim, head_layers: projection head shape.
        head_batch_norm: BatchNorm in the head's hidden layers (SimCLR, MoCo v3; not MoCo v2).
        head_last_batch_norm: affine-free BatchNorm on the output (MoCo v3).
        channels_last: keep weights and inputs in channels-last memory format (faster convs on
            GPUs with tensor cores).
        weights: pretrained backbone weights (`build_backbone`); config.json records "" since
            the weights are saved in model.safetensors.
        hf_config: with ``arch="hf"``, the transformers config of the backbone.
        normalize: the input normalisation the encoder was trained with, ``{"mean", "std",
            "source"}`` (`multicon.encoders.normalize`), saved in config.json; inputs are
            expected normalised with it.

    Example:
        >>> import torch
        >>> enc = ImageEncoder("resnet18", cifar_stem=True, head_hidden_dim=64, out_dim=16)
        >>> x = torch.randn(2, 3, 32, 32)
        >>> enc(x).shape, enc.features(x).shape
        (torch.Size([2, 16]), torch.Size([2, 512]))
    """

    example_input = "torch.rand(2, 3, 32, 32)"  # for the model card's usage snippet

    def __init__(
        self,
        arch: str = "resnet18",
        cifar_stem: bool | None = None,
        head_hidden_dim: int = 2048,
        out_dim: int = 128,
        head_layers: int = 2,
        head_batch_norm: bool = True,
        head_last_batch_norm: bool = False,
        channels_last: bool = False,
        weights: str = "",
        hf_config: dict[str, Any] | None = None,
        normalize: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.channels_last = channels_last
        built = build_backbone(arch, weights=weights, cifar_stem=cifar_stem, hf_config=hf_config)
        if cifar_stem is None:  # SimCLR's 32 px stem for a ResNet trained from scratch
            cifar_stem = has_resnet_stem(built.module) and not weights
            if cifar_stem:
                cifar_stem_of(built.module, arch)
        self.backbone, self.feature_dim = built.module, built.feature_dim
        saved = dict(built.saved)
        if not (arch == "hf" or arch.startswith("hf:")):
            saved["arch"] = arch  # a bare "resnet18" stays as given
        self.arch = saved["arch"]
        self.label = backbone_label(arch, saved.get("hf_config"))
        self.pretrained_stats, self.normalize = built.stats, normalize
        # config.json rebuilds the architecture offline: a transformers config, never a path,
        # and no weights name (the weights are in model.safetensors)
        if isinstance(self._hub_mixin_config, dict):
            self._hub_mixin_config.update(saved, cifar_stem=cifar_stem)
        self.head = ProjectionHead(
            self.feature_dim,
            head_hidden_dim,
            out_dim,
            num_layers=head_layers,
            batch_norm=head_batch_norm,
            last_batch_norm=head_last_batch_norm,
        )
        self.out_dim = out_dim
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x)
            raise ValueError(f"ImageEncoder expects images (B, 3, H, W), got {shape}")
        if not x.is_floating_point():
            raise ValueError(
                f"ImageEncoder expects normalised float images, got dtype {x.dtype}; "
                "make views with multicon.pairs.views (or eval_transform) first"
            )
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, feature_dim)`` (what kNN / linear probes evaluate)."""
        return self.backbone(self._check(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def sync_batchnorm(module: nn.Module, num_processes: int | None = None) -> nn.Module:
    """Turn BatchNorm into SyncBatchNorm when training on several GPU processes.

    Contrastive losses compare samples across the batch, so per-process BatchNorm statistics
    leak which samples share a device (SimCLR uses global BN; MoCo v3 SyncBN). PyTorch's
    SyncBatchNorm needs GPUs, so on CPU (and in one process) the module is returned unchanged.
    ``num_processes`` defaults to Accelerate's view of the launch.

    Example:
        >>> net = resnet_backbone("resnet18")
        >>> sync_batchnorm(net, num_processes=1) is net
        True
    """
    if num_processes is None:
        from multicon.dist import launch_state

        state = launch_state()
        num_processes, device = state.num_processes, state.device
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if num_processes <= 1 or device.type == "cpu":
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
