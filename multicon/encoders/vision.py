"""Image backbones: torchvision ResNets, optionally with the CIFAR stem, as feature extractors."""

from __future__ import annotations

from torch import nn

RESNET_FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


def resnet_backbone(arch: str = "resnet18", *, cifar_stem: bool = False) -> nn.Module:
    """A torchvision ResNet without its classifier: images ``(B, 3, H, W)`` → ``(B, F)``.

    The CIFAR stem (SimCLR's choice for 32×32 images) replaces the 7×7 stride-2 conv and the
    max-pool by one 3×3 stride-1 conv, so small images keep their resolution.
    The feature size is ``RESNET_FEATURE_DIMS[arch]``.

    Example:
        >>> import torch
        >>> net = resnet_backbone("resnet18", cifar_stem=True)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 512])
    """
    import torchvision

    if arch not in RESNET_FEATURE_DIMS:
        raise ValueError(f"unknown ResNet {arch!r}; choose one of {sorted(RESNET_FEATURE_DIMS)}")
    net = getattr(torchvision.models, arch)(weights=None)
    if cifar_stem:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Identity()
    return net
