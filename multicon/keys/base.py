"""What every key source shares: one step's inputs as a direction sees them, and the base class.

A key source answers "which keys is this direction's query scored against" (`KeySource.forward`
returns a `KeySet`) and says what it updates after the optimizer step (`after_step`). Scoring
never changes state: what a source will need after the step (the keys to enqueue) it hands to
`StepInputs.defer`, and the model gives it back in `after_step`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from multicon.pairs.base import PairBatch

Encode = Callable[[nn.Module, Any], torch.Tensor]
"""How an encoder is run on a side's inputs: ``encode(encoder, inputs) -> (B, D)``."""


def call_encoder(encoder: nn.Module, inputs: Any) -> torch.Tensor:
    """The default `Encode`: the encoder called on the inputs, with its graph."""
    return encoder(inputs)


class StepInputs:
    """One step's batch: embeddings computed once per (encoder, side), and deferred updates.

    Two directions of a symmetric model embed the same inputs with the same encoders (CLIP's
    image queries are the reverse direction's image keys): the cache runs each encoder once
    on each side, so BatchNorm statistics and the cost are those of one pass.

    ``encode`` runs an encoder on a side's inputs (default `call_encoder`); a step strategy
    may replace it: GradCache (`multicon.steps.GradCacheStep`) embeds in chunks without a
    graph and hands back leaf tensors whose gradient it backpropagates later.
    """

    def __init__(self, batch: PairBatch, encode: Encode | None = None) -> None:
        self.batch = batch
        self._encode = encode or call_encoder
        self._cache: dict[tuple[int, str], torch.Tensor] = {}
        self.pending: dict[nn.Module, Any] = {}

    def inputs(self, side: str) -> Any:
        return self.batch.query if side == "query" else self.batch.key

    def embed(self, encoder: nn.Module, side: str) -> torch.Tensor:
        key = (id(encoder), side)
        if key not in self._cache:
            out = self._encode(encoder, self.inputs(side))
            if not isinstance(out, torch.Tensor) or out.dim() != 2:
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"encoders must return (B, D) tensors, got {shape}")
            self._cache[key] = out
        return self._cache[key]

    def defer(self, owner: nn.Module, payload: Any) -> None:
        """Keep ``payload`` for ``owner.after_step``; a source used by two directions keeps
        the first direction's (a shared queue enqueues once a step)."""
        self.pending.setdefault(owner, payload)


class View:
    """One direction's view of a step: which side its queries and its keys are read from."""

    def __init__(self, step: StepInputs, reverse: bool) -> None:
        self.step = step
        self.query_side, self.key_side = ("key", "query") if reverse else ("query", "key")
        self.ids = step.batch.key_id
        self.query: torch.Tensor | None = None  # set by the model once the queries are embedded

    @property
    def key_inputs(self) -> Any:
        return self.step.inputs(self.key_side)

    def embed_keys(self, encoder: nn.Module) -> torch.Tensor:
        return self.step.embed(encoder, self.key_side)

    def embed_queries(self, encoder: nn.Module) -> torch.Tensor:
        return self.step.embed(encoder, self.query_side)


class AfterStep(nn.Module):
    """A module whose state changes only after the optimizer step (a queue, an EMA copy)."""

    def after_step(
        self, pending: Any, progress: float, *, diagnostics: bool = False
    ) -> dict[str, float]:
        """Update from what forward deferred (``None`` if nothing); return metrics to log."""
        return {}


class KeySource(AfterStep):
    """Where one direction's keys come from. Subclasses implement ``forward(view) -> KeySet``."""

    def check_batch(self, global_batch: int) -> None:
        """Raise if this source cannot serve a global batch of ``global_batch`` pairs."""


def output_dim(encoder: nn.Module) -> int | None:
    """The embedding size ``encoder`` declares (``out_dim``, ``embed_dim``, ``embedding_dim``)
    or its last `nn.Linear`'s ``out_features``; ``None`` if it says nothing.

    Example:
        >>> output_dim(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)))
        3
    """
    inner = getattr(encoder, "encoder", None)
    if isinstance(inner, nn.Module) and getattr(encoder, "is_ema_copy", False):
        encoder = inner
    for name in ("out_dim", "embed_dim", "embedding_dim"):
        if name in vars(encoder) or hasattr(type(encoder), name):
            value = getattr(encoder, name)
            return value if isinstance(value, int) else None  # None: it does not say
    if isinstance(encoder, nn.Linear):
        return encoder.out_features
    weight = getattr(encoder, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2 and not list(encoder.children()):
        return weight.shape[1]  # an embedding table, (rows, dim)
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    return linears[-1].out_features if linears else None
