"""Encoders: inputs → vectors."""

from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs, build_dual_encoder
from multicon.encoders.embedding import EmbeddingTable
from multicon.encoders.heads import ProjectionHead
from multicon.encoders.image import ResNetImageTower, ViTImageTower
from multicon.encoders.pooled import PooledImageTower, PooledTextTower
from multicon.encoders.pretrained import export_transformers, load_pretrained
from multicon.encoders.text import TextTower
from multicon.encoders.tokenization import load_tokenizer, train_sentencepiece_tokenizer
from multicon.encoders.tower import Tower
from multicon.encoders.vision import (
    RESNET_FEATURE_DIMS,
    ImageEncoder,
    resnet_backbone,
    sync_batchnorm,
)

__all__ = [
    "RESNET_FEATURE_DIMS",
    "DualEncoder",
    "DualEncoderArgs",
    "EmbeddingTable",
    "ImageEncoder",
    "PooledImageTower",
    "PooledTextTower",
    "ProjectionHead",
    "ResNetImageTower",
    "TextTower",
    "Tower",
    "ViTImageTower",
    "build_dual_encoder",
    "export_transformers",
    "load_pretrained",
    "load_tokenizer",
    "resnet_backbone",
    "sync_batchnorm",
    "train_sentencepiece_tokenizer",
]
