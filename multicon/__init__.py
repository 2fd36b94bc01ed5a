"""multicon: contrastive representation learning across modalities with one InfoNCE engine.

Methods are named compositions (`multicon.methods`) of key sources (`multicon.keys`) and a loss
(`multicon.losses`); the `Trainer` runs them with a step strategy (`multicon.steps`).

Example:
    >>> import torch
    >>> import multicon
    >>> model = multicon.methods.simclr(torch.nn.Linear(4, 8))
    >>> x = torch.randn(6, 4)
    >>> model(multicon.PairBatch(x, x, torch.arange(6))).loss.shape
    torch.Size([])
"""

import ast as _ast
import importlib as _importlib
from importlib.util import find_spec as _find_spec
from pathlib import Path as _Path
from typing import TYPE_CHECKING

# Imported on first use (PEP 562), so `import multicon` (and the `multicon` command's --help)
# does not import torch: the word2vec recipe must set THP_MEM_ALLOC_ENABLE before torch loads.
# The imports below are the one list of the top-level names; __getattr__ reads it from this file.
if TYPE_CHECKING:
    from multicon import keys, losses, methods, steps
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
    from multicon.keys import (
        BatchKeys,
        Chain,
        FeatureQueue,
        KeyQueue,
        KeySource,
        LogQCorrection,
        MomentumEncoder,
        NoiseKeys,
        OtherQueries,
        PositiveAndQueue,
        cosine_momentum,
    )
    from multicon.losses import (
        InfoNCE,
        KeySet,
        SigmoidLoss,
        contrastive_logits,
        distillation_targets,
        info_nce,
        sigmoid_loss,
        soft_cross_entropy,
    )
    from multicon.model import ContrastiveModel, ContrastiveOutput, Direction, Distillation
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
    from multicon.steps import AutogradStep, FusedSGDStep, FusedSkipGram, Step
    from multicon.text import (
        Vocabulary,
        Word2Vec,
        load_word2vec_format,
        save_word2vec_format,
    )
    from multicon.text.training import train_word2vec
    from multicon.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult


def _lazy_names() -> dict[str, tuple[str, str | None]]:
    """Top-level name -> (module, attribute; None for a submodule), from the imports above."""
    tree = _ast.parse(_Path(__file__).read_text())
    block = next(
        n for n in tree.body if isinstance(n, _ast.If) and "TYPE_CHECKING" in _ast.unparse(n.test)
    )
    names: dict[str, tuple[str, str | None]] = {}
    for node in block.body:
        for alias in node.names:
            if node.module == __name__:  # `from multicon import keys`: a submodule
                names[alias.name] = (f"{__name__}.{alias.name}", None)
            else:
                names[alias.name] = (node.module, alias.name)
    return names


_LAZY: dict[str, tuple[str, str | None]] | None = None


def __getattr__(name: str):
    global _LAZY
    if _LAZY is None:
        _LAZY = _lazy_names()
    if name in _LAZY:
        module, attribute = _LAZY[name]
    elif not name.startswith("_") and _find_spec(f"{__name__}.{name}"):
        module, attribute = f"{__name__}.{name}", None  # any submodule, as `multicon.dist`
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "AffineViewPairs",
    "AutogradStep",
    "BatchKeys",
    "BatchPairGenerator",
    "CaptionDataset",
    "CaptionFolder",
    "CaptionPairs",
    "Chain",
    "ContextPairs",
    "ContrastiveModel",
    "ContrastiveOutput",
    "DeviceViewPairs",
    "Direction",
    "Distillation",
    "DualEncoder",
    "EmbeddingTable",
    "EncodedCorpus",
    "FeatureQueue",
    "FusedSGDStep",
    "FusedSkipGram",
    "HubArgs",
    "HubModel",
    "ImageData",
    "ImageEncoder",
    "InfoNCE",
    "KNNMonitor",
    "KeyQueue",
    "KeySet",
    "KeySource",
    "LARS",
    "LogQCorrection",
    "MapPairGenerator",
    "MoCoV2Views",
    "MomentumEncoder",
    "NoiseKeys",
    "NonFiniteLossError",
    "OtherQueries",
    "Pair",
    "PairBatch",
    "PairGenerator",
    "PositiveAndQueue",
    "ProjectionHead",
    "RESNET_FEATURE_DIMS",
    "RelatedIds",
    "SigmoidLoss",
    "SimCLRViews",
    "Step",
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
    "keys",
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
    "losses",
    "lr_schedule",
    "make_views",
    "maybe_push",
    "methods",
    "moco_v3_views",
    "most_similar",
    "push_folder",
    "related_by_captions",
    "resnet_backbone",
    "retrieval_recall",
    "save_run",
    "save_word2vec_format",
    "sigmoid_loss",
    "soft_cross_entropy",
    "steps",
    "sync_batchnorm",
    "train_sentencepiece_tokenizer",
    "train_word2vec",
    "write_model_card",
    "zero_shot_accuracy",
]
