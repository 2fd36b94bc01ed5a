"""word2vec's skip-gram step with noise words shared by a window (HogBatch, Ji et al. 2016).

The per-pair loop (`FusedSkipGram`) draws ``negative`` noise words for every (centre, context)
pair and fetches their output rows, each a random memory access, once per pair. HogBatch draws
them once per window (the run of pairs that share a centre, as `ContextPairs` yields them) and
updates the window as two small matrix products: the C context words' input rows against the
centre's and the K noise words' output rows. A pair is trained as word2vec.c and gensim train
it: the context word's input vector scored against the centre's output vector. Same learning
rate and gradients per pair; what differs from the per-pair loop is that a window's pairs share
their noise words and all meet the rows as they were when the window began
(`multicon/csrc/sgns.c`, ``mc_hogbatch_step``). CPU only.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import nn

from multicon.pairs.base import PairBatch
from multicon.steps.fused_skipgram import _F32, _I64, _P, _U64, FusedSkipGram, _library


@functools.cache
def _hogbatch() -> ctypes.CDLL:
    lib = _library()
    # the same arguments as mc_sgns_step
    lib.mc_hogbatch_step.argtypes = [_P, _P, _I64, _P, _P, _I64, _P, _I64, _P, _P, _I64, _F32]
    lib.mc_hogbatch_step.argtypes += [_U64, ctypes.c_int]
    lib.mc_hogbatch_step.restype = ctypes.c_double
    lib.mc_hogbatch_run.restype = ctypes.c_int
    return lib


def window_pairs() -> int:
    """The most pairs one window holds: a longer run of one centre is cut into windows of this
    many, each with its own draw of noise words."""
    return int(_hogbatch().mc_hogbatch_run())


class HogBatchSkipGram(FusedSkipGram):
    """Skip-gram with negative sampling over a `Word2Vec`'s tables, a window at a time.

    A window is a run of consecutive pairs with the same centre (query) id, at most
    `window_pairs` long. For a window of centre ``c`` and context words ``k_1..k_C``: the
    context words' input rows ``I`` (C x d) are scored against the output rows ``O`` of ``c``
    (label 1) and of ``negative`` noise words drawn once for the window from
    ``counts ** ns_exponent`` (label 0; one equal to ``c`` is skipped); with
    ``G = lr * (label - sigmoid(I O^T))`` both tables then move by ``I += G O`` and
    ``O += G^T I``, computed from the rows the window met. Threads take contiguous slices of the
    pairs (never splitting a run) and share the tables without locks.

    Args:
        word2vec: the model to train (its float32 CPU tables are updated in place).
        negative: noise words per window.
        ns_exponent: exponent of the noise distribution (0.75).
        threads: OpenMP threads (``None``: ``torch.get_num_threads()`` at each step).
        hogwild: several CPU processes on one machine share the tables.

    Example:
        >>> from multicon.text import Vocabulary, Word2Vec
        >>> w2v = Word2Vec.from_vocab(Vocabulary(["a", "b", "c", "d"], [4, 3, 2, 1]), dim=8)
        >>> step = HogBatchSkipGram(w2v, negative=2, threads=1)
        >>> centre, context = torch.tensor([0, 0, 1]), torch.tensor([1, 2, 0])
        >>> batch = PairBatch(centre, context, context)
        >>> loss = step.sgd_step(batch, lr=0.025)   # two windows: centre 0, then centre 1
        >>> bool(loss > 0), bool((w2v.output_embeddings.weight[0] != 0).all())
        (True, True)
    """

    devices = ("cpu",)

    def __init__(
        self,
        word2vec: nn.Module,
        *,
        negative: int = 5,
        ns_exponent: float = 0.75,
        threads: int | None = None,
        hogwild: bool = False,
    ) -> None:
        for t in (word2vec.input_embeddings.weight, word2vec.output_embeddings.weight):
            if t.device.type != "cpu":
                raise ValueError(f"HogBatchSkipGram updates tables on the CPU; got {t.device}")
        super().__init__(
            word2vec, negative=negative, ns_exponent=ns_exponent, threads=threads, hogwild=hogwild
        )
        _hogbatch()  # fail here, not at the first step, if the library lacks the kernel

    def sgd_step(
        self, batch: PairBatch, lr: float, *, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Train on ``batch`` (query = centre ids, key = context ids) at learning rate ``lr``.

        ``noise`` (``(B, negative)`` ids, for tests) replaces the drawn noise words: a window
        uses the row of its first pair. Returns the summed loss over the pairs.
        """
        inp = self.word2vec.input_embeddings.weight
        out = self.word2vec.output_embeddings.weight
        if inp.device.type != "cpu" or out.device.type != "cpu":
            raise ValueError(f"HogBatchSkipGram runs on the CPU; the tables are on {inp.device}")
        centre, context = self._ids(batch.query, "query"), self._ids(batch.key, "key")
        if len(centre) != len(context):
            raise ValueError(
                f"query and key must pair up: {len(centre)} centre ids, {len(context)} context ids"
            )
        return self._c_step(
            _hogbatch().mc_hogbatch_step, "HogBatch skip-gram", centre, context, lr, noise
        )
