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
from multicon.data import (
    CaptionDataset,
    CaptionFolder,
    EncodedCorpus,
    ImageData,
    TextCorpus,
    encode_corpus,
    load_caption_dataset,
    load_cifar,
    load_hf_images,
    load_image_folder,
    load_images,
)
from multicon.encoders import (
    RESNET_FEATURE_DIMS,
    DualEncoder,
    EmbeddingTable,
    ImageEncoder,
    ProjectionHead,
    load_tokenizer,
    resnet_backbone,
    sync_batchnorm,
    train_sentencepiece_tokenizer,
)
from multicon.eval import (
    KNNMonitor,
    evaluate_analogies,
    evaluate_retrieval,
    evaluate_similarity,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
    most_similar,
    retrieval_recall,
    zero_shot_accuracy,
)
from multicon.false_negatives import RelatedIds, related_by_captions
from multicon.hub import HubArgs, HubModel, maybe_push, push_folder, save_run, write_model_card
from multicon.loss import (
    InfoNCE,
    KeySet,
    NegativeSamplingLoss,
    contrastive_logits,
    distillation_targets,
    info_nce,
    soft_cross_entropy,
)
from multicon.model import ContrastiveModel, ContrastiveOutput, FusedSGDModel
from multicon.momentum import MomentumEncoder, cosine_momentum
from multicon.negatives import (
    FeatureQueue,
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
from multicon.pairs.captions import CaptionPairs
from multicon.pairs.context import ContextPairs
from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import (
    MoCoV2Views,
    SimCLRViews,
    ViewConfig,
    make_views,
    moco_v3_views,
)
from multicon.text import (
    FusedSkipGram,
    Vocabulary,
    Word2Vec,
    load_word2vec_format,
    save_word2vec_format,
)
from multicon.text.training import train_word2vec
from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "RESNET_FEATURE_DIMS",
    "AffineViewPairs",
    "BatchPairGenerator",
    "CaptionDataset",
    "CaptionFolder",
    "CaptionPairs",
    "ContextPairs",
    "ContrastiveModel",
    "ContrastiveOutput",
    "DeviceViewPairs",
    "DualEncoder",
    "EmbeddingTable",
    "EncodedCorpus",
    "FeatureQueue",
    "FusedSGDModel",
    "FusedSkipGram",
    "HubArgs",
    "HubModel",
    "ImageData",
    "ImageEncoder",
    "InBatchNegatives",
    "InfoNCE",
    "KNNMonitor",
    "KeySet",
    "LogQCorrection",
    "MapPairGenerator",
    "MoCoV2Views",
    "MomentumEncoder",
    "MomentumQueue",
    "NegativeSamplingLoss",
    "NonFiniteLossError",
    "Pair",
    "PairBatch",
    "PairGenerator",
    "ProjectionHead",
    "RelatedIds",
    "SampledNegatives",
    "SimCLRViews",
    "TextCorpus",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ViewConfig",
    "ViewPairs",
    "Vocabulary",
    "Word2Vec",
    "build_optimizer",
    "contrastive_logits",
    "cosine_momentum",
    "distillation_targets",
    "encode_corpus",
    "evaluate_analogies",
    "evaluate_retrieval",
    "evaluate_similarity",
    "extract_features",
    "info_nce",
    "knn_accuracy",
    "knn_predict",
    "latest_checkpoint",
    "linear_probe",
    "load_caption_dataset",
    "load_cifar",
    "load_hf_images",
    "load_image_folder",
    "load_images",
    "load_tokenizer",
    "load_word2vec_format",
    "lr_schedule",
    "make_views",
    "maybe_push",
    "moco_v3_views",
    "most_similar",
    "push_folder",
    "related_by_captions",
    "resnet_backbone",
    "retrieval_recall",
    "save_run",
    "save_word2vec_format",
    "soft_cross_entropy",
    "sync_batchnorm",
    "train_sentencepiece_tokenizer",
    "train_word2vec",
    "write_model_card",
    "zero_shot_accuracy",
]
