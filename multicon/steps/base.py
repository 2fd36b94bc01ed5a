"""What a training step is to the trainer: turn one batch into one update.

The `Trainer` owns the loop (schedule, checkpoints, logging, evaluation); a `Step` owns how a
batch becomes an update: the plain autograd step (`AutogradStep`), word2vec's fused SGD loop
(`FusedSkipGram`), GradCache (`GradCacheStep`). The trainer calls, in order: `check` when it
is built, `prepare` when training starts, then per batch `__call__` and `after_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from multicon.model import ContrastiveOutput
from multicon.pairs.base import PairBatch


@dataclass
class StepContext:
    """What a step may use: the accelerator, the model as trained (``model``, possibly wrapped
    for DDP) and as built (``unwrapped``), the optimizer to step, this step's scheduled learning
    rate, the gradient-norm clip (0: off), and ``watch(loss)``, which notes a non-finite loss
    before any update is applied."""

    accelerator: Any
    model: nn.Module
    unwrapped: nn.Module
    optimizer: torch.optim.Optimizer
    lr: float
    grad_clip: float
    watch: Callable[[torch.Tensor], None]


class Step:
    """A strategy for one training step.

    Attributes:
        hogwild: processes on one machine share one copy of the parameters and update it
            without gradient sync (word2vec's parallelism, Recht et al. 2011; CPU only).
    """

    hogwild: bool = False

    def check(self, model: nn.Module, config, accelerator) -> None:
        """Raise, naming the setting, for anything this step cannot honour."""

    def prepare(self, model: nn.Module, optimizer, accelerator) -> tuple[nn.Module, Any]:
        """Place the model and the optimizer for training (DDP, a device, shared memory)."""
        if self.hogwild:  # one shared copy of the parameters; no DDP, no gradient sync
            from multicon.hogwild import check_hogwild, share_parameters

            check_hogwild(accelerator.device, accelerator.num_processes)
            share_parameters(model)
            return model, accelerator.prepare(optimizer)
        return accelerator.prepare(model, optimizer)

    def reduction(self, unwrapped: nn.Module) -> str:
        """How the step's loss reduces over pairs: ``"mean"``, or ``"sum"`` (logged as the sum
        over processes)."""
        return "mean"

    def __call__(self, batch: PairBatch, ctx: StepContext) -> ContrastiveOutput:
        raise NotImplementedError

    def after_step(
        self, output: ContrastiveOutput, ctx: StepContext, progress: float, diagnostics: bool
    ) -> dict[str, float]:
        """After the update (momentum encoders, queues); returns metrics to log."""
        return {}
