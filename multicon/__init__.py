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
from multicon.data.corpus import EncodedCorpus, TextCorpus, encode_corpus
from multicon.encoders import RESNET_FEATURE_DIMS, EmbeddingTable, ProjectionHead, resnet_backbone
from multicon.eval import (
    evaluate_analogies,
    evaluate_similarity,
    knn_accuracy,
    knn_predict,
    most_similar,
)
from multicon.loss import InfoNCE, KeySet, NegativeSamplingLoss, contrastive_logits, info_nce
from multicon.model import ContrastiveModel, ContrastiveOutput
from multicon.momentum import MomentumEncoder, cosine_momentum
from multicon.negatives import (
    InBatchNegatives,
    LogQCorrection,
    MomentumQueue,
    SampledNegatives,
)
from multicon.optim import LARS, build_optimizer, lr_schedule
from multicon.pairs import (
    BatchPairGenerator,
    MapPairGenerator,
    Pair,
    PairBatch,
    PairGenerator,
)
from multicon.pairs.affine import AffineViewPairs
from multicon.pairs.context import ContextPairs
from multicon.text import Vocabulary, Word2Vec, load_word2vec_format, save_word2vec_format
from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "RESNET_FEATURE_DIMS",
    "AffineViewPairs",
    "BatchPairGenerator",
    "ContextPairs",
    "ContrastiveModel",
    "ContrastiveOutput",
    "EmbeddingTable",
    "EncodedCorpus",
    "InBatchNegatives",
    "InfoNCE",
    "KeySet",
    "LogQCorrection",
    "MapPairGenerator",
    "MomentumEncoder",
    "MomentumQueue",
    "NegativeSamplingLoss",
    "NonFiniteLossError",
    "Pair",
    "PairBatch",
    "PairGenerator",
    "ProjectionHead",
    "SampledNegatives",
    "TextCorpus",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "Vocabulary",
    "Word2Vec",
    "build_optimizer",
    "contrastive_logits",
    "cosine_momentum",
    "encode_corpus",
    "evaluate_analogies",
    "evaluate_similarity",
    "info_nce",
    "knn_accuracy",
    "knn_predict",
    "latest_checkpoint",
    "load_word2vec_format",
    "lr_schedule",
    "most_similar",
    "resnet_backbone",
    "save_word2vec_format",
]
