"""Image backbones: torchvision ResNets, optionally with the CIFAR stem, as feature extractors."""

from __future__ import annotations

import torch
from torch import nn

from multicon.encoders.heads import ProjectionHead
from multicon.hub import HubModel

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
    The feature size is ``RESNET_FEATURE_DIMS[arch]``.

    Example:
        >>> import torch
        >>> net = resnet_backbone("resnet18", cifar_stem=True, norm="group")
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """
    import torchvision

    if arch not in RESNET_FEATURE_DIMS:
        raise ValueError(f"unknown ResNet {arch!r}; choose one of {sorted(RESNET_FEATURE_DIMS)}")
    if norm not in RESNET_NORMS:
        raise ValueError(f"unknown ResNet norm {norm!r}; choose one of {RESNET_NORMS}")
    norm_layer = (lambda channels: nn.GroupNorm(32, channels)) if norm == "group" else None
    net = getattr(torchvision.models, arch)(weights=None, norm_layer=norm_layer)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net


class ImageEncoder(
    HubModel, tags=["image-feature-extraction"], pipeline_tag="image-feature-extraction"
):
    """ResNet backbone + projection head: the image side of SimCLR/MoCo.

    ``forward(x)`` gives what the contrastive loss sees (the projection); MoCo v3's predictor
    is the method's (`multicon.methods.moco_v3`), not the encoder's. ``features(x)`` gives the
    backbone features that kNN and
    linear probes evaluate. Saved with ``save_pretrained`` (model.safetensors + config.json) and
    rebuilt with ``ImageEncoder.from_pretrained(folder)``.

    Args:
        arch: torchvision ResNet name (see `RESNET_FEATURE_DIMS`).
        cifar_stem: 3×3 stride-1 stem without max-pool, for 32×32 images.
        head_hidden_dim, out_dim, head_layers: projection head shape.
        head_batch_norm: BatchNorm in the head's hidden layers (SimCLR, MoCo v3; not MoCo v2).
        head_last_batch_norm: affine-free BatchNorm on the output (MoCo v3).
        channels_last: keep weights and inputs in channels-last memory format (faster convs on
            GPUs with tensor cores).

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
        cifar_stem: bool = True,
        head_hidden_dim: int = 2048,
        out_dim: int = 128,
        head_layers: int = 2,
        head_batch_norm: bool = True,
        head_last_batch_norm: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        self.arch, self.channels_last = arch, channels_last
        self.backbone = resnet_backbone(arch, cifar_stem=cifar_stem)
        self.feature_dim = RESNET_FEATURE_DIMS[arch]
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
