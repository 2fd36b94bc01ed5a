"""The plain step: forward, backward, clip, optimizer step, then the model's `after_step`."""

from __future__ import annotations

from torch import nn

from multicon.model import ContrastiveModel, ContrastiveOutput
from multicon.pairs.base import PairBatch
from multicon.steps.base import Step, StepContext


class AutogradStep(Step):
    """Forward a `ContrastiveModel`, backpropagate its loss and step the optimizer.

    A loss summed over pairs (``reduction = "sum"``: word2vec's SGNS) is multiplied by the
    number of processes before backward: DDP averages gradients, and the sum over the global
    batch is what one process would have stepped with.

    Args:
        hogwild: CPU processes on one machine update one shared copy of the parameters without
            gradient sync (for sparse models: word2vec's tables).
    """

    def __init__(self, *, hogwild: bool = False) -> None:
        self.hogwild = hogwild

    def check(self, model: nn.Module, config, accelerator) -> None:
        if not isinstance(model, ContrastiveModel):
            raise TypeError(
                f"model: the autograd step trains a ContrastiveModel, got {type(model).__name__}"
            )
        model.check_batch(config.batch_size * accelerator.num_processes)

    def reduction(self, unwrapped: nn.Module) -> str:
        return unwrapped.reduction

    def __call__(self, batch: PairBatch, ctx: StepContext) -> ContrastiveOutput:
        acc = ctx.accelerator
        with acc.autocast():
            out = ctx.model(batch)
        ctx.watch(out.loss)
        loss = out.loss
        synced = acc.num_processes > 1 and not self.hogwild
        if synced and ctx.unwrapped.reduction == "sum":
            loss = loss * acc.num_processes  # DDP's mean of per-process sums -> the global sum
        acc.backward(loss)
        self.update(ctx)
        return out

    @staticmethod
    def update(ctx: StepContext) -> None:
        """Clip the gradients (if asked), step the optimizer and clear the gradients."""
        if ctx.grad_clip > 0:
            ctx.accelerator.clip_grad_norm_(ctx.model.parameters(), ctx.grad_clip)
        ctx.optimizer.step()
        ctx.optimizer.zero_grad(set_to_none=True)

    def after_step(
        self, output: ContrastiveOutput, ctx: StepContext, progress: float, diagnostics: bool
    ) -> dict[str, float]:
        return ctx.unwrapped.after_step(output, progress, diagnostics=diagnostics)
