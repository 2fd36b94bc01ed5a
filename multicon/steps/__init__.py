"""How the trainer turns a batch into an update: one strategy per file.

`AutogradStep` (the default): forward, backward, optimizer step, the model's `after_step`.
`FusedSkipGram`: word2vec's per-pair SGD loop (C on a CPU, Triton on a GPU), no autograd.
`HogBatchSkipGram`: the same on a CPU with noise words shared by a window (HogBatch).
`GradCacheStep`: the autograd step for a batch embedded in chunks (GradCache, Gao et al. 2021).
"""

from multicon.steps.autograd import AutogradStep
from multicon.steps.base import Step, StepContext
from multicon.steps.fused_skipgram import FusedSGDStep, FusedSkipGram
from multicon.steps.grad_cache import GradCacheArgs, GradCacheStep, step_for
from multicon.steps.hogbatch import HogBatchSkipGram

__all__ = [
    "AutogradStep",
    "FusedSGDStep",
    "FusedSkipGram",
    "GradCacheArgs",
    "GradCacheStep",
    "HogBatchSkipGram",
    "Step",
    "StepContext",
    "step_for",
]
