"""GradCache: a batch larger than memory, with the full batch's gradient (Gao et al. 2021).

"Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup": the loss of in-batch
negatives couples every pair, but its gradient with respect to the parameters factors through
the embeddings. So:

1. embed the batch in chunks without a graph (each chunk's RNG state recorded);
2. compute the loss on all the embeddings (leaf tensors) and backpropagate to them, and directly
   into the loss's own parameters (a learnable temperature);
3. re-run each chunk with a graph under its recorded RNG state (the same dropout masks) and
   backpropagate its slice of the cached embedding gradient.

Peak memory is one chunk's activations plus the embeddings; each sample's encoder forward runs
twice. Key sources, queues and the gather across processes work on the full per-process
embeddings as in the plain step. Encoders that give no gradient (momentum copies, frozen towers,
a distillation teacher) run in chunks without a graph and are not re-run.

Not exact with BatchNorm in training mode: it normalises each chunk by the chunk's statistics
(a warning names the module); GroupNorm and LayerNorm are exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from multicon.model import ContrastiveModel, ContrastiveOutput
from multicon.pairs.base import PairBatch
from multicon.steps.autograd import AutogradStep
from multicon.steps.base import Step, StepContext


def batch_len(inputs: Any) -> int:
    """Rows in a side's inputs: a tensor, a mapping of tensors (tokens) or a sequence of them."""
    if isinstance(inputs, torch.Tensor):
        return inputs.shape[0]
    if isinstance(inputs, Mapping) and inputs:
        return batch_len(next(iter(inputs.values())))
    if isinstance(inputs, list | tuple) and inputs:
        return batch_len(inputs[0])
    raise TypeError(
        "GradCache splits encoder inputs that are tensors, mappings or sequences of tensors, "
        f"got {type(inputs).__name__}"
    )


def split_inputs(inputs: Any, chunk: int) -> list[Any]:
    """``inputs`` in consecutive chunks of ``chunk`` rows (the last may be shorter).

    Example:
        >>> parts = split_inputs({"ids": torch.arange(5), "mask": torch.ones(5)}, 2)
        >>> [p["ids"].tolist() for p in parts]
        [[0, 1], [2, 3], [4]]
    """
    if isinstance(inputs, torch.Tensor):
        return list(inputs.split(chunk))
    n = batch_len(inputs)
    starts = range(0, n, chunk)
    if isinstance(inputs, Mapping):
        parts = [{k: _rows(v, s, chunk) for k, v in inputs.items()} for s in starts]
        try:  # keep the mapping's type (a tokenizer's BatchEncoding) where it rebuilds from a dict
            return [type(inputs)(p) for p in parts]
        except TypeError:
            return parts
    return [type(inputs)(_rows(v, s, chunk) for v in inputs) for s in starts]


def _rows(value: Any, start: int, chunk: int) -> Any:
    if isinstance(value, torch.Tensor | list | tuple):
        return value[start : start + chunk]
    return value  # not per-row (a flag): every chunk gets it


def _cuda_devices() -> list[int]:
    """CUDA devices whose generator a chunk may draw from (the current one, once CUDA is up)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return [torch.cuda.current_device()]
    return []


@dataclass
class _RngState:
    cpu: torch.Tensor
    cuda: list[torch.Tensor]

    @classmethod
    def now(cls, devices: list[int]) -> _RngState:
        return cls(torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices])

    def restore(self, devices: list[int]) -> None:
        torch.set_rng_state(self.cpu)
        for d, state in zip(devices, self.cuda, strict=True):
            torch.cuda.set_rng_state(state, d)


@dataclass
class _Cached:
    """One encoder's embeddings of one side: the chunks it ran, their RNG states, the leaf."""

    encoder: nn.Module
    parts: list[Any]
    states: list[_RngState]
    embeddings: torch.Tensor
    devices: list[int] = field(default_factory=list)


class ChunkedEncode:
    """The `Encode` hook of one GradCache step (`multicon.keys.base.StepInputs`).

    Called by the model for each (encoder, side), it embeds the inputs in chunks without a
    graph and returns them as one leaf tensor that requires grad when the encoder trains.
    After the loss's backward, `backward` re-runs each chunk with a graph under its recorded
    RNG state and backpropagates the leaf's gradient into the encoder's parameters.

    Args:
        chunk: rows per encoder call.
        autocast: a context manager factory for the re-run (the step's mixed precision).

    Example:
        >>> enc, x = nn.Linear(3, 2), torch.randn(5, 3)
        >>> encode = ChunkedEncode(chunk=2)
        >>> emb = encode(enc, x)
        >>> emb.requires_grad, emb.grad_fn is None     # a leaf: no graph kept
        (True, True)
        >>> emb.pow(2).sum().backward(); encode.backward()
        >>> expected = torch.autograd.grad(enc(x).pow(2).sum(), enc.weight)[0]
        >>> torch.allclose(enc.weight.grad, expected)
        True
    """

    def __init__(
        self, chunk: int, autocast: Callable[[], AbstractContextManager] | None = None
    ) -> None:
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self.chunk = chunk
        self.autocast = autocast
        self.cached: list[_Cached] = []

    def __call__(self, encoder: nn.Module, inputs: Any) -> torch.Tensor:
        parts = split_inputs(inputs, self.chunk)
        devices = _cuda_devices()
        # An encoder gives gradient if grad is on here (not a teacher under no_grad), it has
        # trainable parameters and its output carries them (an EMA copy runs under no_grad
        # inside): the first chunk runs with grad to tell, its graph dropped at once.
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in encoder.parameters())
        outs, states = [], []
        for i, part in enumerate(parts):
            states.append(_RngState.now(devices))
            with torch.set_grad_enabled(trains and i == 0):
                out = encoder(part)
            if i == 0:
                trains = trains and out.requires_grad
            outs.append(out.detach())
        embeddings = torch.cat(outs)
        if trains:
            embeddings.requires_grad_(True)
            self.cached.append(_Cached(encoder, parts, states, embeddings, devices))
        return embeddings

    def backward(self) -> None:
        """Re-run each trained encoder's chunks with a graph and backpropagate the cached
        gradient of its embeddings. The global RNG and the encoders' buffers (BatchNorm's
        running statistics) are left as the first pass left them."""
        for cached in self.cached:
            grad = cached.embeddings.grad
            if grad is None:  # the loss did not use these embeddings
                continue
            buffers = [(b, b.clone()) for b in cached.encoder.buffers()]
            start = 0
            with torch.random.fork_rng(devices=cached.devices):
                for part, state in zip(cached.parts, cached.states, strict=True):
                    state.restore(cached.devices)
                    with self.autocast() if self.autocast is not None else nullcontext():
                        out = cached.encoder(part)
                    n = out.shape[0]
                    out.backward(grad[start : start + n].to(out.dtype))
                    start += n
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
        self.cached.clear()


def batchnorm_modules(model: nn.Module) -> list[str]:
    """Names of the modules that normalise by batch statistics in ``model``'s current mode."""
    return [
        name
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats)
    ]


def average_gradients(params: Sequence[nn.Parameter], world: int) -> None:
    """Average the gradients over the ``world`` processes in one all-reduce per dtype, as DDP
    would. A parameter without a gradient (on every process alike: the model is the same
    everywhere) is left without one."""
    grads = [p.grad for p in params if p.grad is not None]
    if any(g.is_sparse for g in grads):
        raise ValueError(
            "grad_cache_chunk: sparse gradients (an embedding table built with sparse=True) "
            "cannot be averaged across processes; use dense tables"
        )
    by_dtype: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault((g.dtype, g.device), []).append(g)
    for group in by_dtype.values():
        flat = torch._utils._flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat.div_(world)
        for g, avg in zip(group, torch._utils._unflatten_dense_tensors(flat, group), strict=True):
            g.copy_(avg)


class GradCacheStep(AutogradStep):
    """The autograd step's update for a batch embedded ``chunk`` rows at a time (GradCache).

    The gradients are those of the full batch (to rounding) for encoders without BatchNorm:
    the loss, its negatives and the gather across processes see every embedding at once. Under
    several processes each process chunks its own share; the gradients are averaged over
    processes once a step, after the last chunk (the model is run outside DDP's forward, whose
    per-backward sync would fire once per chunk and miss the loss's own parameters).

    Args:
        chunk: rows per encoder call; at most the per-process batch (``batch_size``), which it
            need not divide.

    Example:
        >>> from multicon import methods
        >>> step = GradCacheStep(chunk=64)
        >>> step.chunk
        64
    """

    def __init__(self, chunk: int) -> None:
        super().__init__()
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1:
            raise ValueError(f"grad_cache_chunk must be a positive integer, got {chunk!r}")
        self.chunk = chunk
        self._warned = False

    def check(self, model: nn.Module, config, accelerator) -> None:
        if not isinstance(model, ContrastiveModel):
            raise TypeError(
                "model: grad_cache_chunk trains a ContrastiveModel (multicon.methods), got "
                f"{type(model).__name__}"
            )
        if self.chunk > config.batch_size:
            raise ValueError(
                f"grad_cache_chunk {self.chunk} is larger than the per-process batch of "
                f"{config.batch_size} (batch_size): lower --grad_cache_chunk (0: off)"
            )
        super().check(model, config, accelerator)

    def __call__(self, batch: PairBatch, ctx: StepContext) -> ContrastiveOutput:
        acc, model = ctx.accelerator, ctx.unwrapped
        self._warn_batchnorm(model)
        encode = ChunkedEncode(self.chunk, acc.autocast)
        with acc.autocast():
            out = model(batch, encode=encode)
        ctx.watch(out.loss)
        loss = out.loss
        synced = acc.num_processes > 1
        if synced and model.reduction == "sum":
            loss = loss * acc.num_processes  # the average over processes -> the global sum
        acc.backward(loss)  # into the embeddings and the loss's own parameters
        encode.backward()  # into the encoders, chunk by chunk
        if synced:
            average_gradients(list(model.parameters()), acc.num_processes)
        self.update(ctx)
        return out

    def _warn_batchnorm(self, model: nn.Module) -> None:
        if self._warned:
            return
        self._warned = True
        names = batchnorm_modules(model)
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            warnings.warn(
                f"grad_cache_chunk: {names[0]}{more} use BatchNorm's batch statistics, which "
                f"GradCache computes per chunk of {self.chunk}: the gradients are not the full "
                "batch's (GroupNorm and LayerNorm are exact)",
                stacklevel=3,
            )


def step_for(grad_cache_chunk: int, batch_size: int) -> Step:
    """The step a recipe's ``--grad_cache_chunk`` asks for: `AutogradStep` for 0, else
    `GradCacheStep`; a negative chunk, or one larger than ``batch_size``, is refused here,
    before any data is loaded.

    Example:
        >>> type(step_for(0, 256)).__name__, type(step_for(64, 256)).__name__
        ('AutogradStep', 'GradCacheStep')
    """
    if grad_cache_chunk < 0:
        raise ValueError(f"--grad_cache_chunk must be >= 0 (0: off), got {grad_cache_chunk}")
    if grad_cache_chunk == 0:
        return AutogradStep()
    if grad_cache_chunk > batch_size:
        raise ValueError(
            f"--grad_cache_chunk {grad_cache_chunk} is larger than the per-process batch of "
            f"{batch_size} (--batch_size): lower --grad_cache_chunk (0: off)"
        )
    return GradCacheStep(grad_cache_chunk)


@dataclass
class GradCacheArgs:
    """The recipes' ``--grad_cache_chunk`` flag (SimCLR, MoCo, captions; word2vec refuses it
    with its fused kernel)."""

    grad_cache_chunk: int = field(
        default=0,
        metadata={
            "help": "GradCache: embed each process's batch this many pairs at a time, with the "
            "full batch's gradients (exact without BatchNorm); 0: off."
        },
    )

    def __post_init__(self) -> None:
        chunk = self.grad_cache_chunk
        if chunk < 0:
            raise ValueError(f"--grad_cache_chunk must be >= 0 (0: off), got {chunk}")

    def step(self, batch_size: int) -> Step:
        """The training step: `AutogradStep`, or `GradCacheStep` (refused if larger than
        ``batch_size``, the per-process batch)."""
        return step_for(self.grad_cache_chunk, batch_size)
