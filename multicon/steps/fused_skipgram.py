"""word2vec's skip-gram step fused into one loop: C on the CPU, a Triton kernel on a GPU.

The shared engine's word2vec (`multicon.methods.sgns`) computes a batch's summed SGNS loss
with tensor ops and applies one summed SGD step. word2vec and gensim instead walk the pairs and
apply each pair's update before the next, in threads that share the tables without locks. On a
CPU that walk is faster: each pair touches a handful of 400-byte rows, and a C loop can fetch the
next pair's rows while it computes this one (`multicon/csrc/sgns.c`). Same objective, same
learning rate, same gradients: for a batch whose pairs share no row, one `sgd_step` equals a
summed-loss SGD step of the shared engine exactly (tested). On a GPU the same loop runs as one
Triton kernel a step (`multicon.text.sgns_triton`).
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import nn

from multicon import native
from multicon.keys.noise import noise_weights
from multicon.model import ContrastiveOutput
from multicon.pairs.base import PairBatch
from multicon.steps.base import Step, StepContext

_P, _I64, _F32, _U64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_uint64


@functools.cache
def _library() -> ctypes.CDLL:
    lib = native.load("sgns")
    lib.mc_alias_table.argtypes = [_P, _I64, _P, _P]
    lib.mc_alias_table.restype = ctypes.c_int
    lib.mc_sample.argtypes = [_P, _P, _I64, _I64, _U64, _P]
    lib.mc_sample.restype = None
    # tables, dim, centre and context ids, n, noise, negative, alias table, vocab, lr, seed, threads
    lib.mc_sgns_step.argtypes = [_P, _P, _I64, _P, _P, _I64, _P, _I64, _P, _P, _I64, _F32, _U64]
    lib.mc_sgns_step.argtypes += [ctypes.c_int]
    lib.mc_sgns_step.restype = ctypes.c_double
    return lib


def _seed() -> int:
    """A 63-bit seed from torch's generator: saved in checkpoints, so resume replays draws."""
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))


class FusedSGDStep(nn.Module, Step):
    """A step that applies its own plain-SGD update to a batch, with no autograd graph.

    Some objectives are fastest as one fused loop that computes a pair's gradient and applies
    it before the next pair (word2vec's skip-gram on CPU: `FusedSkipGram`). The trainer keeps
    everything else: the learning-rate schedule (``lr`` is the scheduled rate), checkpoints,
    resume, logging and evaluation. It accepts only what such a step honours: ``sgd`` without
    momentum, weight decay or clipping, full precision, on one of its ``devices``, in one
    process or several with ``hogwild``. The loss it returns is a sum over pairs.
    """

    devices: tuple[str, ...] = ("cpu",)  # device types its step runs on

    def __init__(self, *, hogwild: bool = False) -> None:
        super().__init__()
        self.hogwild = hogwild

    def sgd_step(self, batch: PairBatch, lr: float) -> torch.Tensor:
        """Update the parameters in place for ``batch``; return the batch's summed loss (0-d)."""
        raise NotImplementedError

    def check(self, model: nn.Module, config, accelerator) -> None:
        ignored = {
            "optimizer": config.optimizer != "sgd",
            "momentum": config.momentum != 0,
            "weight_decay": config.weight_decay != 0,
            "grad_clip": config.grad_clip != 0,
            "mixed_precision": config.mixed_precision != "no",
        }
        bad = [name for name, is_bad in ignored.items() if is_bad]
        if bad:
            raise ValueError(
                "a fused SGD step applies plain SGD in full precision itself; it cannot honour "
                + ", ".join(f"{name}={getattr(config, name)!r}" for name in bad)
                + " (use optimizer='sgd', momentum=0, weight_decay=0, no clipping, no mixed "
                "precision)"
            )
        device, processes = accelerator.device, accelerator.num_processes
        if device.type not in self.devices or (processes > 1 and not self.hogwild):
            raise ValueError(
                f"{type(self).__name__} updates its tables itself: it runs on "
                f"{' or '.join(self.devices)}, in one process or several with hogwild "
                f"(here: {device}, {processes} processes, hogwild={self.hogwild})"
            )

    def prepare(self, model: nn.Module, optimizer, accelerator):
        model, optimizer = super().prepare(model, optimizer, accelerator)
        if not self.hogwild:
            self.to(accelerator.device)  # its buffers follow the tables
        return model, optimizer

    def reduction(self, unwrapped: nn.Module) -> str:
        return "sum"

    def __call__(self, batch: PairBatch, ctx: StepContext) -> ContrastiveOutput:
        loss = self.sgd_step(batch, ctx.lr)  # the optimizer only holds the scheduled lr
        ctx.watch(loss)
        return ContrastiveOutput(loss)


class FusedSkipGram(FusedSGDStep):
    """Skip-gram with negative sampling over a `Word2Vec`'s tables, one fused update per pair.

    Per (centre, context) pair: the centre's input vector is scored against the context word's
    output vector (label 1) and ``negative`` noise words drawn from ``counts ** ns_exponent``
    (label 0; one equal to the context word is skipped, as word2vec does); the output rows and
    then the input row are updated by ``lr`` times their gradient. Pairs are split into
    ``threads`` contiguous slices run in parallel without locks (word2vec's hogwild). On a CUDA
    device (tables moved there, e.g. by the trainer) the step is a Triton kernel whose programs
    each walk ``pairs_per_program`` pairs.

    Train with ``Trainer(word2vec, pairs, config, step=FusedSkipGram(word2vec))``: the trainer
    checkpoints and evaluates the `Word2Vec`, the step updates its tables.

    Args:
        word2vec: the model to train (its tables are updated in place; float32, CPU).
        negative: noise words per pair (word2vec ``-negative``).
        ns_exponent: exponent of the noise distribution (0.75).
        threads: OpenMP threads on the CPU (``None``: ``torch.get_num_threads()`` at each step).
        pairs_per_program: on a GPU, pairs each kernel program walks in order; fewer programs
            a step means fewer concurrent, colliding updates of frequent words' rows.
        hogwild: several CPU processes on one machine share the tables (word2vec's threads
            across processes).

    Example:
        >>> from multicon.text import Vocabulary, Word2Vec
        >>> from multicon.pairs.base import PairBatch
        >>> w2v = Word2Vec.from_vocab(Vocabulary(["a", "b", "c", "d"], [4, 3, 2, 1]), dim=8)
        >>> step = FusedSkipGram(w2v, negative=2, threads=1)
        >>> batch = PairBatch(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([1, 0]))
        >>> loss = step.sgd_step(batch, lr=0.025)   # the summed loss; the tables moved in place
        >>> bool(loss > 0), bool((w2v.output_embeddings.weight[1] != 0).all())
        (True, True)
    """

    def __init__(
        self,
        word2vec: nn.Module,
        *,
        negative: int = 5,
        ns_exponent: float = 0.75,
        threads: int | None = None,
        pairs_per_program: int = 32,
        hogwild: bool = False,
    ) -> None:
        super().__init__(hogwild=hogwild)
        if negative < 1:
            raise ValueError(f"negative must be >= 1, got {negative}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        if pairs_per_program < 1:
            raise ValueError(f"pairs_per_program must be >= 1, got {pairs_per_program}")
        tables = (word2vec.input_embeddings.weight, word2vec.output_embeddings.weight)
        for t in tables:
            if t.dtype != torch.float32 or t.device.type not in self.devices:
                raise ValueError(
                    "FusedSkipGram updates float32 tables on the CPU or a CUDA device; got "
                    f"{t.dtype} on {t.device}"
                )
        weights = noise_weights(word2vec.require_vocab().counts, ns_exponent).contiguous()
        self.word2vec, self.negative, self.threads = word2vec, negative, threads
        self.pairs_per_program = pairs_per_program
        lib = _library()  # not kept on the module, which then still copies and pickles
        prob = torch.empty(len(weights), dtype=torch.float32)
        alias = torch.empty(len(weights), dtype=torch.int64)
        if lib.mc_alias_table(weights.data_ptr(), len(weights), prob.data_ptr(), alias.data_ptr()):
            raise MemoryError("no memory for the noise distribution's alias table")
        # buffers: they follow the tables to the training device; not saved (made from counts)
        self.register_buffer("_prob", prob.to(tables[0].device), persistent=False)
        self.register_buffer("_alias", alias.to(tables[0].device), persistent=False)

    devices = ("cpu", "cuda")

    def check(self, model: nn.Module, config, accelerator) -> None:
        if model is not self.word2vec:
            raise ValueError("model: train the Word2Vec this FusedSkipGram was built with")
        super().check(model, config, accelerator)

    def sample_noise(self, count: int, seed: int | None = None) -> torch.Tensor:
        """``count`` noise word ids drawn as the step draws them (on the tables' device)."""
        seed = _seed() if seed is None else seed
        if self._prob.device.type != "cpu":
            from multicon.text.sgns_triton import sample_noise_triton

            return sample_noise_triton(self._prob, self._alias, count, seed)
        out = torch.empty(count, dtype=torch.int64)
        vocab = len(self._prob)
        _library().mc_sample(
            self._prob.data_ptr(), self._alias.data_ptr(), vocab, count, seed, out.data_ptr()
        )
        return out

    def sgd_step(
        self, batch: PairBatch, lr: float, *, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Train on ``batch`` (query = centre ids, key = context ids) at learning rate ``lr``.

        ``noise`` (``(B, negative)`` ids) replaces the drawn noise words (for tests).
        Returns the summed loss, each pair scored as it met the tables.
        """
        inp = self.word2vec.input_embeddings.weight
        if inp.device.type != "cpu":
            return self._gpu_step(batch, lr, noise)
        centre, context = self._ids(batch.query, "query"), self._ids(batch.key, "key")
        return self._c_step(_library().mc_sgns_step, "fused skip-gram", centre, context, lr, noise)

    def _c_step(
        self,
        kernel,
        name: str,
        centre: torch.Tensor,
        context: torch.Tensor,
        lr: float,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """One call of a C step (``mc_sgns_step``, ``mc_hogbatch_step``: the same signature)
        on the CPU tables; returns the summed loss."""
        inp = self.word2vec.input_embeddings.weight
        out = self.word2vec.output_embeddings.weight
        if noise is not None:
            noise = self._check_noise(self._ids(noise, "noise"), len(centre))
        loss = kernel(
            inp.data_ptr(),
            out.data_ptr(),
            inp.shape[1],
            centre.data_ptr(),
            context.data_ptr(),
            len(centre),
            None if noise is None else noise.data_ptr(),
            self.negative,
            self._prob.data_ptr(),
            self._alias.data_ptr(),
            len(self._prob),
            float(lr),
            _seed(),
            self.threads or torch.get_num_threads(),
        )
        if loss == -1.0:
            raise MemoryError(f"the {name} step could not allocate its work buffers")
        return torch.tensor(loss)

    def _gpu_step(self, batch: PairBatch, lr: float, noise: torch.Tensor | None) -> torch.Tensor:
        """The Triton kernel; ids are not range-checked here (that would synchronise with the
        host every step): the kernel skips an id outside the vocabulary and returns a NaN loss."""
        from multicon.text.sgns_triton import sgns_step_triton

        inp = self.word2vec.input_embeddings.weight
        device = inp.device

        def ids(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1).to(device=device, dtype=torch.int64).contiguous()

        centre, context = ids(batch.query), ids(batch.key)
        if noise is not None:
            noise = self._check_noise(ids(noise), len(centre))
        return sgns_step_triton(
            inp,
            self.word2vec.output_embeddings.weight,
            centre,
            context,
            noise,
            self.negative,
            self._prob,
            self._alias,
            float(lr),
            _seed(),
            self.pairs_per_program,
        )

    def _check_noise(self, noise: torch.Tensor, pairs: int) -> torch.Tensor:
        if noise.shape != (pairs * self.negative,):
            raise ValueError(
                f"noise must hold {self.negative} ids per pair, ({pairs}, {self.negative}); "
                f"got {tuple(noise.shape)} values"
            )
        return noise

    def _ids(self, ids: torch.Tensor, name: str) -> torch.Tensor:
        """``ids`` as a contiguous CPU int64 vector, checked to lie in the vocabulary (the C
        loop indexes the tables with them)."""
        if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point:
            raise TypeError(f"{name} must be a tensor of word ids, got {type(ids).__name__}")
        ids = ids.reshape(-1).to(device="cpu", dtype=torch.int64).contiguous()
        vocab = len(self._prob)
        if len(ids):
            low, high = (int(x) for x in torch.aminmax(ids))
            if low < 0 or high >= vocab:
                raise ValueError(
                    f"{name} holds word ids outside the vocabulary [0, {vocab}): {low}..{high}"
                )
        return ids
