"""Encoders: inputs → vectors."""

from multicon.encoders.embedding import EmbeddingTable
from multicon.encoders.heads import ProjectionHead
from multicon.encoders.vision import (
    RESNET_FEATURE_DIMS,
    ImageEncoder,
    resnet_backbone,
    sync_batchnorm,
)

__all__ = [
    "RESNET_FEATURE_DIMS",
    "EmbeddingTable",
    "ImageEncoder",
    "ProjectionHead",
    "resnet_backbone",
    "sync_batchnorm",
]
