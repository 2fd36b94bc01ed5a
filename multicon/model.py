"""A contrastive model: one or more directions and a loss (and a teacher, for distillation).

    direction   a query encoder and a key source (`multicon.keys`): where its keys come from
    loss        `InfoNCE` or `SigmoidLoss` (`multicon.losses`), scoring each direction
    teacher     optional `Distillation`: ALBEF's soft labels from EMA copies of the encoders

A symmetric method has two directions, the second reading the pair the other way round
(``reverse=True``: queries from the key side). `multicon.methods` names the compositions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from multicon.keys.base import AfterStep, Encode, KeySource, StepInputs, View
from multicon.keys.batch import BatchKeys
from multicon.keys.momentum import MomentumEncoder
from multicon.keys.noise import NoiseKeys
from multicon.losses.info_nce import InfoNCE, distillation_targets
from multicon.losses.sigmoid import SigmoidLoss
from multicon.pairs.base import PairBatch


@dataclass
class ContrastiveOutput:
    """What one forward pass gives back: the loss, and what `after_step` needs."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    pending: dict[nn.Module, Any] = field(default_factory=dict)  # source -> its deferred update


class Direction(nn.Module):
    """A query encoder and the source of the keys its queries are scored against.

    Args:
        query: maps the query inputs to ``(B, D)`` embeddings.
        keys: a `KeySource`.
        reverse: read the pair the other way round: queries from ``batch.key``, keys from
            ``batch.query`` (the second direction of a symmetric loss).
    """

    def __init__(self, query: nn.Module, keys: KeySource, *, reverse: bool = False) -> None:
        super().__init__()
        if not isinstance(query, nn.Module):
            raise TypeError(f"query must be an nn.Module encoder, got {type(query).__name__}")
        if not isinstance(keys, KeySource):
            raise TypeError(f"keys must be a KeySource (multicon.keys), got {type(keys).__name__}")
        self.query, self.keys, self.reverse = query, keys, reverse


class Distillation(nn.Module):
    """ALBEF's momentum distillation (Li et al. 2021, section 3.3): each direction's label puts
    ``1 - weight`` on the positive and ``weight`` on a teacher's softmax over the same keys.

    Args:
        teachers: one `MomentumEncoder` per direction: the EMA copy of its query encoder.
        weight: in (0, 1).
    """

    def __init__(self, teachers: Sequence[MomentumEncoder], weight: float) -> None:
        super().__init__()
        if not 0.0 < weight < 1.0:
            raise ValueError(f"distill must be in (0, 1), got {weight}")
        for t in teachers:
            if not isinstance(t, MomentumEncoder):
                raise TypeError(f"a teacher must be a MomentumEncoder, got {type(t).__name__}")
        self.teachers, self.weight = nn.ModuleList(teachers), weight


class ContrastiveModel(nn.Module):
    """Directions and a loss; `forward` scores a batch, `after_step` updates the key sources.

    Args:
        directions: one `Direction`, or two for a symmetric loss (their losses are averaged).
        loss: `InfoNCE` or `SigmoidLoss`.
        distill: optional `Distillation` (InfoNCE only: it takes soft targets).

    Example:
        >>> from multicon.keys import BatchKeys
        >>> enc = torch.nn.Linear(4, 8)
        >>> model = ContrastiveModel([Direction(enc, BatchKeys(enc))], InfoNCE(0.1))
        >>> x = torch.randn(6, 4)
        >>> out = model(PairBatch(x, x + 0.01 * torch.randn(6, 4), torch.arange(6)))
        >>> out.loss.backward(); model.after_step(out, progress=0.1)
        {}
    """

    def __init__(
        self,
        directions: Sequence[Direction],
        loss: InfoNCE | SigmoidLoss,
        *,
        distill: Distillation | None = None,
    ) -> None:
        super().__init__()
        directions = list(directions)
        if not directions or not all(isinstance(d, Direction) for d in directions):
            raise TypeError("directions must be a non-empty list of Direction")
        if not isinstance(loss, InfoNCE | SigmoidLoss):
            raise TypeError(f"loss must be InfoNCE or SigmoidLoss, got {type(loss).__name__}")
        if distill is not None:
            if not isinstance(distill, Distillation):
                raise TypeError(f"distill must be a Distillation, got {type(distill).__name__}")
            if not isinstance(loss, InfoNCE):
                raise TypeError("distill needs InfoNCE: its labels are a softmax over the keys")
            if len(distill.teachers) != len(directions):
                raise ValueError(
                    f"distill has {len(distill.teachers)} teachers for {len(directions)} "
                    "directions: give one per direction"
                )
        if isinstance(loss, SigmoidLoss):
            _check_sigmoid_keys(directions, loss)
        self.directions = nn.ModuleList(directions)
        self.loss = loss
        self.distill = distill

    @property
    def reduction(self) -> str:
        """The loss's reduction over queries: ``"mean"`` or ``"sum"``."""
        return self.loss.reduction

    @property
    def query_encoder(self) -> nn.Module:
        """The first direction's query encoder (what a method trains for use)."""
        return self.directions[0].query

    def check_batch(self, global_batch: int) -> None:
        """Raise if a key source cannot serve ``global_batch`` pairs a step (a queue smaller
        than it); the trainer calls this before the first step."""
        for module in self.modules():
            if isinstance(module, KeySource):
                module.check_batch(global_batch)

    def forward(self, batch: PairBatch, *, encode: Encode | None = None) -> ContrastiveOutput:
        """Score ``batch``. ``encode(encoder, inputs)`` runs the encoders on the batch's inputs
        (default: called with their graph; `multicon.steps.GradCacheStep` passes its chunked
        pass); key sources call it through `View.embed_queries` / `View.embed_keys`."""
        step = StepInputs(batch, encode)
        losses = []
        for i, direction in enumerate(self.directions):
            view = View(step, direction.reverse)
            view.query = view.embed_queries(direction.query)
            keys = direction.keys(view)
            if self.distill is None:
                losses.append(self.loss(view.query, keys, view.ids))
                continue
            with torch.no_grad():
                teacher = view.embed_queries(self.distill.teachers[i])
                logits = self.loss.logits(teacher, keys, view.ids)
            target = distillation_targets(logits, keys.positive, self.distill.weight)
            losses.append(self.loss(view.query, keys, view.ids, target=target))
        loss = losses[0] if len(losses) == 1 else torch.stack(losses).mean()
        return ContrastiveOutput(loss, pending=step.pending)

    @torch.no_grad()
    def after_step(
        self, output: ContrastiveOutput, progress: float, *, diagnostics: bool = False
    ) -> dict[str, float]:
        """After the optimizer step: each source and EMA copy updates itself (the momentum
        encoders move, the queues enqueue this step's keys).

        Args:
            output: what `forward` returned for this step.
            progress: fraction of training done, in [0, 1], for the momentum schedule.
            diagnostics: also measure each full queue's drift before enqueuing: the mean cosine
                of this step's keys to its newest and oldest quarter (``<name>_cos_new`` /
                ``<name>_cos_old``).
        """
        metrics: dict[str, float] = {}
        for module in self.modules():  # each once, in the order they were built
            if isinstance(module, AfterStep):
                pending = output.pending.get(module)
                metrics.update(module.after_step(pending, progress, diagnostics=diagnostics))
        return metrics


def _check_sigmoid_keys(directions: Sequence[Direction], loss: SigmoidLoss) -> None:
    """Refuse the sigmoid loss over keys it cannot learn from.

    Sampled noise keys (word2vec's SGNS) always do. The batch's own keys do only with a bias:
    each positive then meets B - 1 equally weighted negatives, and without a bias to offset
    them word2vec's neighbours stayed at chance on the planted-topic corpus (0.037; chance
    0.04). SigLIP's learned bias (init -10) is that offset. Queued or momentum keys are not a
    form SigLIP defines: refused.
    """
    for d in directions:
        if isinstance(d.keys, NoiseKeys):
            continue
        online = isinstance(d.keys, BatchKeys) and not isinstance(d.keys.encoder, MomentumEncoder)
        if online and loss.has_bias:
            continue
        if online:
            raise ValueError(
                "loss: the sigmoid loss over BatchKeys keys (in-batch negatives) without a bias "
                "does not learn (word2vec: chance-level neighbours); give it a learned bias "
                "(SigLIP: methods.siglip, SigmoidLoss(bias=-10.0, learnable=True)), or use InfoNCE"
            )
        raise ValueError(
            "loss: the sigmoid loss scores sampled noise keys (methods.sgns) or this step's "
            f"in-batch keys with a bias (methods.siglip), not {type(d.keys).__name__} keys "
            "(queues, momentum copies); use InfoNCE for those"
        )
