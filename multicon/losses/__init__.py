"""The two shared losses over a `KeySet`: InfoNCE (softmax over the keys) and the pairwise
sigmoid loss (word2vec's SGNS, SigLIP). Each is a pure function plus a thin module; each module
declares its ``reduction`` ("mean" or "sum"), which the training step honours across processes.
"""

from multicon.losses.info_nce import (
    InfoNCE,
    distillation_targets,
    info_nce,
    soft_cross_entropy,
)
from multicon.losses.keyset import KeySet, contrastive_logits
from multicon.losses.sigmoid import SigmoidLoss, sigmoid_loss, softplus

__all__ = [
    "InfoNCE",
    "KeySet",
    "SigmoidLoss",
    "contrastive_logits",
    "distillation_targets",
    "info_nce",
    "sigmoid_loss",
    "soft_cross_entropy",
    "softplus",
]
