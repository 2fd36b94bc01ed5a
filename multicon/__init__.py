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
from multicon.data import CaptionDataset, CaptionFolder, load_caption_dataset
from multicon.encoders import (
    RESNET_FEATURE_DIMS,
    DualEncoder,
    ProjectionHead,
    load_tokenizer,
    resnet_backbone,
    train_sentencepiece_tokenizer,
)
from multicon.eval import (
    evaluate_retrieval,
    knn_accuracy,
    knn_predict,
    retrieval_recall,
    zero_shot_accuracy,
)
from multicon.hub import HubArgs, HubModel, maybe_push, push_folder, save_run, write_model_card
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
from multicon.pairs.captions import CaptionPairs
from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "zero_shot_accuracy",
    "train_sentencepiece_tokenizer",
    "retrieval_recall",
    "load_tokenizer",
    "load_caption_dataset",
    "evaluate_retrieval",
    "DualEncoder",
    "CaptionPairs",
    "CaptionFolder",
    "CaptionDataset",
    "LARS",
    "RESNET_FEATURE_DIMS",
    "AffineViewPairs",
    "BatchPairGenerator",
    "ContrastiveModel",
    "ContrastiveOutput",
    "HubArgs",
    "HubModel",
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
    "maybe_push",
    "push_folder",
    "resnet_backbone",
    "save_run",
    "write_model_card",
]
