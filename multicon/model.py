"""One model for every method: encoders + a source of negatives + InfoNCE.

    SimCLR  = ContrastiveModel(enc, symmetric=True, queries_as_negatives=True)  # NT-Xent
    MoCo v2 = ContrastiveModel(enc, negatives=MomentumQueue(65536, 128, in_batch=False),
                               momentum=0.99)
    MoCo v3 = ContrastiveModel(enc, symmetric=True, momentum=0.99)
    CLIP    = ContrastiveModel(image_enc, text_enc, symmetric=True,
                               loss=InfoNCE(0.07, learnable=True))
    ALBEF   = CLIP + momentum=0.995 + negatives=MomentumQueue(...)
                   + reverse_negatives=MomentumQueue(...) + distill=0.4

A method is a combination of arguments, not a code path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from multicon.loss import InfoNCE, distillation_targets
from multicon.momentum import MomentumEncoder
from multicon.negatives import InBatchNegatives, MomentumQueue, append_keys
from multicon.pairs.base import PairBatch

_DIAGNOSTIC_KEYS = 64  # enough keys for a mean cosine, few enough to cost nothing


@dataclass
class ContrastiveOutput:
    """What one forward pass gives back: the loss and what `after_step` needs."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    # (negatives, keys, key ids, the inputs the keys were embedded from), for `update`
    pending: list[tuple[nn.Module, torch.Tensor, torch.Tensor, Any]] = field(default_factory=list)
    # how `loss` reduces over the batch's pairs: "mean", or "sum" (word2vec), whose global value
    # over several processes is their sum; the trainer scales its gradient to match (DDP averages)
    reduction: str = "mean"

    def __post_init__(self) -> None:
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")


class ContrastiveModel(nn.Module):
    """Query encoder, key encoder, negatives and InfoNCE, combined.

    Args:
        query_encoder: maps query inputs to ``(B, D)`` embeddings.
        key_encoder: maps key inputs to ``(B, D)``; ``None`` shares the query encoder.
        negatives: builds the keys a query is scored against from this step's keys (default:
            `InBatchNegatives`); a `MomentumQueue` adds past keys. One whose ``embed_positives``
            is true (`SampledNegatives`) embeds the positives itself, from their ids, with its
            noise keys: the key encoder is then not called on the batch.
        reverse_negatives: the same for the reverse direction of a symmetric loss when it needs
            its own state (a second queue for two towers); defaults to ``negatives``. A
            `FeatureQueue` must hold its direction's key tower (the key encoder forward, the
            query encoder in reverse) and is used without ``momentum``.
        loss: the `InfoNCE` (or compatible) module. Its ``reduction`` attribute (default
            ``"mean"``; ``"sum"`` for `NegativeSamplingLoss(reduction="sum")`) tells the trainer
            how to combine it over processes.
        symmetric: also score keys as queries against the query side (SimCLR, CLIP, MoCo v3).
        queries_as_negatives: the other queries of the global batch are negatives too, each
            query's own entry masked by id: with ``symmetric`` this is SimCLR's NT-Xent
            (2B - 2 negatives per view, as SimCLR and lightly's ``NTXentLoss`` score it).
        momentum: keys come from EMA copies of the encoders: a float base momentum (rising to 1
            on a cosine), or ``(base, final)``.
        online_batch_keys: with ``momentum``, this step's keys (positives and in-batch negatives)
            come from the online encoders with gradient, as without momentum; only the keys a
            queue stores (the past steps' negatives) come from the EMA copies.
        distill: with ``momentum``, ALBEF's momentum distillation: each direction's label puts
            ``1 - distill`` on the positive and ``distill`` on the EMA model's softmax over the
            same keys, so keys the EMA model finds as close as the positive (another image's
            caption of the same scene) are not pushed away as true negatives. 0 (default): off.

    Example:
        >>> import torch
        >>> model = ContrastiveModel(torch.nn.Linear(4, 8), symmetric=True)
        >>> x = torch.randn(6, 4)
        >>> out = model(PairBatch(x, x + 0.01 * torch.randn(6, 4), torch.arange(6)))
        >>> out.loss.backward(); _ = model.after_step(out, progress=0.1)
    """

    def __init__(
        self,
        query_encoder: nn.Module,
        key_encoder: nn.Module | None = None,
        *,
        negatives: nn.Module | None = None,
        reverse_negatives: nn.Module | None = None,
        loss: nn.Module | None = None,
        symmetric: bool = False,
        queries_as_negatives: bool = False,
        momentum: float | tuple[float, float] | None = None,
        online_batch_keys: bool = False,
        distill: float = 0.0,
    ) -> None:
        super().__init__()
        self.query_encoder = query_encoder
        self.key_encoder = key_encoder  # None: shared with the query encoder
        self.negatives = negatives if negatives is not None else InBatchNegatives()
        self.reverse_negatives = reverse_negatives
        self.loss = loss if loss is not None else InfoNCE()
        self.symmetric = symmetric
        self.queries_as_negatives = queries_as_negatives
        self.online_batch_keys = online_batch_keys
        self.momentum_query = self.momentum_key = None
        if _embeds_positives(self.negatives) and (
            symmetric or momentum is not None or queries_as_negatives
        ):
            raise ValueError(
                "negatives that embed the positives themselves (embed_positives=True) score one "
                "direction with the online key encoder: use none of symmetric, momentum and "
                "queries_as_negatives"
            )
        if not 0.0 <= distill < 1.0:
            raise ValueError(f"distill must be in [0, 1), got {distill}")
        if distill and (momentum is None or online_batch_keys or queries_as_negatives):
            raise ValueError(
                "distill needs momentum encoders (the teacher) scoring the same keys as the "
                "loss: give momentum, and use neither online_batch_keys nor queries_as_negatives"
            )
        self.distill = distill
        if distill and not hasattr(self.loss, "logits"):
            raise ValueError("distill needs a loss with logits and soft targets, as InfoNCE")
        self._check_feature_queues(momentum)
        if momentum is not None:
            base, final = (momentum, 1.0) if isinstance(momentum, float | int) else momentum
            self.momentum_query = MomentumEncoder(query_encoder, base, final)
            if key_encoder is not None:
                self.momentum_key = MomentumEncoder(key_encoder, base, final)

    def _check_feature_queues(self, momentum) -> None:
        """A `FeatureQueue` re-projects features with its own (online) tower: that tower must
        be the one embedding its direction's keys, and no EMA copy may replace it."""
        directions = [(self.negatives, self._key_encoder(), "negatives", "key encoder")]
        if self.symmetric:
            reverse = self._reverse_negatives()
            directions.append((reverse, self.query_encoder, "reverse_negatives", "query encoder"))
        hint = " (give reverse_negatives for the other direction)" if self.symmetric else ""
        for negatives, encoder, name, role in directions:
            if not _queues_inputs(negatives):
                continue
            if momentum is not None:
                raise ValueError(
                    f"{name} re-projects queued features with the online tower, whose keys "
                    "momentum would replace by an EMA copy's: use it without momentum"
                )
            if getattr(negatives, "tower", None) is not encoder:
                raise ValueError(
                    f"{name} queues the features of another tower: it must hold the {role}{hint}"
                )

    # -- encoders ---------------------------------------------------------------------------
    def _key_encoder(self) -> nn.Module:
        return self.key_encoder if self.key_encoder is not None else self.query_encoder

    def _momentum_key(self) -> MomentumEncoder | None:
        return self.momentum_key if self.momentum_key is not None else self.momentum_query

    def _reverse_negatives(self) -> nn.Module:
        return self.reverse_negatives if self.reverse_negatives is not None else self.negatives

    def encode_query(self, inputs) -> torch.Tensor:
        """Embed query-side inputs with the online query encoder."""
        return self.query_encoder(inputs)

    def encode_key(self, inputs) -> torch.Tensor:
        """Embed key-side inputs with the online key encoder."""
        return self._key_encoder()(inputs)

    # -- training ---------------------------------------------------------------------------
    def forward(self, batch: PairBatch) -> ContrastiveOutput:
        ids = batch.key_id
        q = self.encode_query(batch.query)
        reduction = getattr(self.loss, "reduction", "mean")
        if _embeds_positives(self.negatives):  # word2vec: positives looked up with the noise
            loss = self.loss(q, self.negatives(None, ids), ids)
            return ContrastiveOutput(loss, reduction=reduction)
        need_online_key = self.symmetric or self.momentum_query is None or self.online_batch_keys
        k_online = self.encode_key(batch.key) if need_online_key else None
        if self.momentum_query is not None:
            k = self._momentum_key()(batch.key)
            need_rev = self.symmetric or self.distill  # distill: the forward direction's teacher
            k_rev = self.momentum_query(batch.query) if need_rev else None
        else:
            k, k_rev = k_online, q
        _check_pair(q, k)
        k_store, k_rev_store = k, k_rev  # what the queues receive
        if self.online_batch_keys:
            k, k_rev = k_online, q

        forward_keys = self.negatives(k, ids)
        if self.queries_as_negatives:
            forward_keys = append_keys(forward_keys, q, ids)
        loss = self._direction_loss(q, forward_keys, ids, teacher=k_rev)
        pending = [(self.negatives, k_store.detach(), ids, batch.key)]
        if self.symmetric:
            reverse = self._reverse_negatives()
            reverse_keys = reverse(k_rev, ids)
            if self.queries_as_negatives:
                reverse_keys = append_keys(reverse_keys, k_online, ids)
            backward_loss = self._direction_loss(k_online, reverse_keys, ids, teacher=k_store)
            loss = (loss + backward_loss) / 2
            if reverse is not self.negatives:
                pending.append((reverse, k_rev_store.detach(), ids, batch.query))
        return ContrastiveOutput(loss, pending=pending, reduction=reduction)

    def _direction_loss(self, query, keys, ids, *, teacher) -> torch.Tensor:
        """One direction's loss; with ``distill``, against labels from ``teacher``, the EMA
        model's embedding of the same inputs as ``query`` (scored on the same, EMA, keys)."""
        if not self.distill:
            return self.loss(query, keys, ids)
        with torch.no_grad():
            teacher_logits = self.loss.logits(teacher, keys, ids)
        target = distillation_targets(teacher_logits, keys.positive, self.distill)
        return self.loss(query, keys, ids, target=target)

    @torch.no_grad()
    def after_step(
        self, output: ContrastiveOutput, progress: float, *, diagnostics: bool = False
    ) -> dict[str, float]:
        """After the optimizer step: move the momentum encoders, then enqueue this step's keys.

        Args:
            output: what `forward` returned for this step.
            progress: fraction of training done, in [0, 1], for the momentum schedule.
            diagnostics: also measure each full queue's drift before enqueuing: the mean
                cosine of this step's keys to its newest and oldest quarter
                (``queue_cos_new`` / ``queue_cos_old``, ``reverse_queue_*`` for the second
                queue). Old keys far below new ones mean the embedding has moved since they
                were queued, and they are easy negatives.
        """
        metrics: dict[str, float] = {}
        if self.momentum_query is not None:
            metrics["momentum"] = self.momentum_query.update(self.query_encoder, progress)
            if self.momentum_key is not None:
                self.momentum_key.update(self.key_encoder, progress)
        for negatives, keys, ids, inputs in output.pending:
            if diagnostics and isinstance(negatives, MomentumQueue) and negatives.is_full():
                name = "queue" if negatives is self.negatives else "reverse_queue"
                by_age = negatives.similarity_by_age(
                    keys[:_DIAGNOSTIC_KEYS], min(4, negatives.size)
                )
                metrics[f"{name}_cos_new"] = by_age[0].item()  # newest quarter
                metrics[f"{name}_cos_old"] = by_age[-1].item()  # oldest quarter
            if _queues_inputs(negatives):
                negatives.update(keys, ids, inputs=inputs)
            else:
                negatives.update(keys, ids)
        return metrics


def _queues_inputs(negatives: nn.Module) -> bool:
    return bool(getattr(negatives, "queues_inputs", False))


def _embeds_positives(negatives: nn.Module) -> bool:
    return bool(getattr(negatives, "embed_positives", False))


def _check_pair(q: torch.Tensor, k: torch.Tensor) -> None:
    if not isinstance(q, torch.Tensor) or not isinstance(k, torch.Tensor):
        raise TypeError("encoders must return tensors of shape (B, D)")
    if q.dim() != 2 or k.dim() != 2 or q.shape != k.shape:
        raise ValueError(
            "query and key embeddings must both be (B, D) with the same shape, got "
            f"{tuple(q.shape)} and {tuple(k.shape)}"
        )


class FusedSGDModel(nn.Module):
    """A model that applies its own plain-SGD update to a batch, with no autograd graph.

    Some objectives are fastest as one fused loop that computes a pair's gradient and applies
    it before the next pair (word2vec's skip-gram on CPU: `multicon.text.FusedSkipGram`). The
    `Trainer` calls `sgd_step` in place of forward, backward and ``optimizer.step``, and keeps
    everything else: the learning-rate schedule (``lr`` is the scheduled rate), checkpoints,
    resume, logging and evaluation. It accepts only what such a step honours: ``sgd`` without
    momentum, weight decay or clipping, full precision, on one of its ``devices``.
    """

    devices: tuple[str, ...] = ("cpu",)  # device types its step runs on

    def sgd_step(self, batch: PairBatch, lr: float) -> torch.Tensor:
        """Update the parameters in place for ``batch``; return the batch's loss (0-d)."""
        raise NotImplementedError

    def after_step(
        self, output: ContrastiveOutput, progress: float, *, diagnostics: bool = False
    ) -> dict[str, float]:
        """Nothing to do after a step: no momentum encoder, no queue."""
        return {}
