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
from multicon.data import ImageData, load_cifar, load_hf_images, load_image_folder, load_images
from multicon.encoders import (
    RESNET_FEATURE_DIMS,
    ImageEncoder,
    ProjectionHead,
    resnet_backbone,
    sync_batchnorm,
)
from multicon.eval import (
    KNNMonitor,
    extract_features,
    knn_accuracy,
    knn_predict,
    linear_probe,
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
from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import (
    MoCoV2Views,
    SimCLRViews,
    ViewConfig,
    make_views,
    moco_v3_views,
)
from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult

__version__ = "0.1.0"

__all__ = [
    "LARS",
    "RESNET_FEATURE_DIMS",
    "AffineViewPairs",
    "BatchPairGenerator",
    "ContrastiveModel",
    "ContrastiveOutput",
    "HubArgs",
    "HubModel",
    "DeviceViewPairs",
    "ImageData",
    "ImageEncoder",
    "InBatchNegatives",
    "InfoNCE",
    "KNNMonitor",
    "KeySet",
    "MapPairGenerator",
    "MoCoV2Views",
    "MomentumEncoder",
    "MomentumQueue",
    "NonFiniteLossError",
    "Pair",
    "PairBatch",
    "PairGenerator",
    "ProjectionHead",
    "SimCLRViews",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "ViewConfig",
    "ViewPairs",
    "build_optimizer",
    "contrastive_logits",
    "cosine_momentum",
    "extract_features",
    "info_nce",
    "knn_accuracy",
    "knn_predict",
    "latest_checkpoint",
    "linear_probe",
    "load_cifar",
    "load_hf_images",
    "load_image_folder",
    "load_images",
    "lr_schedule",
    "maybe_push",
    "push_folder",
    "resnet_backbone",
    "save_run",
    "write_model_card",
    "make_views",
    "moco_v3_views",
    "sync_batchnorm",
]
