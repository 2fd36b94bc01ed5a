"""Encoders: inputs → vectors."""

from multicon.encoders.heads import ProjectionHead
from multicon.encoders.vision import RESNET_FEATURE_DIMS, resnet_backbone

__all__ = ["RESNET_FEATURE_DIMS", "ProjectionHead", "resnet_backbone"]
