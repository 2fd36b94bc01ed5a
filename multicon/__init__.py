"""multicon: contrastive representation learning across modalities with one InfoNCE engine.

Example:
    >>> import torch
    >>> import multicon
    >>> model = multicon.ContrastiveModel(torch.nn.Linear(4, 8), symmetric=True)
    >>> x = torch.randn(6, 4)
    >>> model(multicon.PairBatch(x, x, torch.arange(6))).loss.shape
    torch.Size([])
"""

from multicon.checkpoint import latest_checkpoint
from multicon.encoders import RESNET_FEATURE_DIMS, ProjectionHead, resnet_backbone
from multicon.eval import knn_accuracy, knn_predict
from multicon.loss import InfoNCE, KeySet, contrastive_logits, info_nce
from multicon.model import ContrastiveModel, ContrastiveOutput
from multicon.momentum import MomentumEncoder, cosine_momentum
from multicon.negatives import InBatchNegatives, MomentumQueue
from multicon.optim import LARS, build_optimizer, lr_schedule
from multicon.pairs import (
    BatchPairGenerator,
    MapPairGenerator,
    Pair,
    PairBatch,
    PairGenerator,
)
from multicon.pairs.affine import AffineViewPairs
from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "RESNET_FEATURE_DIMS",
    "AffineViewPairs",
    "BatchPairGenerator",
    "ContrastiveModel",
    "ContrastiveOutput",
    "InBatchNegatives",
    "InfoNCE",
    "KeySet",
    "MapPairGenerator",
    "MomentumEncoder",
    "MomentumQueue",
    "NonFiniteLossError",
    "Pair",
    "PairBatch",
    "PairGenerator",
    "ProjectionHead",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "contrastive_logits",
    "cosine_momentum",
    "info_nce",
    "knn_accuracy",
    "knn_predict",
    "latest_checkpoint",
    "lr_schedule",
    "resnet_backbone",
]
