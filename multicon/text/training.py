"""word2vec in one call, as gensim's ``Word2Vec(sentences, vector_size=..., ...)``.

`train_word2vec` wires the parts a longer script would (vocabulary, encoded corpus,
`ContextPairs`, the model, `Trainer`) with gensim's defaults. The recipe
(`recipes/word2vec_text8.py`) does the same with evaluation, reports and the Hub.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import torch

from multicon import native
from multicon.data.corpus import TextCorpus, encode_corpus
from multicon.methods import sgns
from multicon.pairs.context import ContextPairs
from multicon.steps.fused_skipgram import FusedSkipGram
from multicon.text.vocab import Vocabulary
from multicon.text.word2vec import Word2Vec
from multicon.train import TrainConfig, Trainer


def train_word2vec(
    sentences: Iterable[list[str]] | str | Path,
    *,
    dim: int = 100,
    window: int = 5,
    min_count: int = 5,
    max_vocab: int | None = None,
    negative: int = 5,
    ns_exponent: float = 0.75,
    sample: float = 1e-3,
    epochs: int = 5,
    lr: float = 0.025,
    batch_size: int = 8192,
    seed: int = 0,
    kernel: Literal["auto", "fused", "torch"] = "auto",
    output_dir: str | Path | None = None,
) -> Word2Vec:
    """Train skip-gram word vectors with negative sampling; returns the `Word2Vec`.

    Args:
        sentences: tokenized sentences, re-iterable (a list of lists of words, a `TextCorpus`),
            or a text file path (read with `TextCorpus.from_file`: lowercased words).
        dim, window, min_count, negative, ns_exponent, sample, epochs: gensim's ``vector_size``,
            ``window``, ``min_count``, ``negative``, ``ns_exponent``, ``sample``, ``epochs``,
            with its defaults. ``max_vocab``: keep at most this many words.
        lr: initial learning rate (gensim's ``alpha``), decayed linearly to 0.
        batch_size: pairs per step.
        seed: seeds the tables, the pairs and the noise words.
        kernel: ``"fused"`` (word2vec's per-pair loop in C, `FusedSkipGram`), ``"torch"`` (the
            engine's batched step, 16 noise words shared by 256 pairs), or ``"auto"``: fused when
            a C compiler is found. Threads: ``torch.set_num_threads``.
        output_dir: where the trainer writes checkpoints (``None``: a temporary folder, removed).

    Example:
        >>> topics = [[f"t{t}w{i % 4}" for i in range(t, t + 12)] for t in range(6)] * 60
        >>> w2v = train_word2vec(topics, dim=16, window=3, min_count=1, sample=0, epochs=3)
        >>> w2v.most_similar("t0w0", topn=3)[0][0].startswith("t0")
        True
    """
    if isinstance(sentences, str | Path):
        sentences = TextCorpus.from_file(sentences)
    elif iter(sentences) is sentences:
        raise TypeError(
            "sentences must be re-iterable (a list of lists of words, or a TextCorpus): it is "
            "read twice, for the vocabulary and for the ids; got a one-shot iterator"
        )
    if kernel not in ("auto", "fused", "torch"):
        raise ValueError(f"kernel must be 'auto', 'fused' or 'torch', got {kernel!r}")
    if kernel == "auto":
        kernel = "fused" if native.available("sgns") else "torch"
    vocab = Vocabulary.build(sentences, min_count=min_count, max_size=max_vocab)
    encoded = encode_corpus(sentences, vocab)
    torch.manual_seed(seed)
    w2v = Word2Vec.from_vocab(vocab, dim)
    if kernel == "fused":
        model, step = w2v, FusedSkipGram(w2v, negative=negative, ns_exponent=ns_exponent)
    else:
        model = sgns(w2v, negative, ns_exponent, shared_negatives=16, noise_group=256)
        step = None
    pairs = ContextPairs(encoded, vocab.counts, window=window, sample=sample, seed=seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            output_dir=str(output_dir or tmp),
            epochs=epochs,
            batch_size=min(batch_size, pairs.num_pairs()),
            optimizer="sgd",
            lr=lr,
            momentum=0.0,
            weight_decay=0.0,
            schedule="linear",
            seed=seed,
            eval_every=0,
            keep_checkpoints=1,
            log_with="",
            progress_bar=False,
        )
        Trainer(model, pairs, config, step=step).fit()
    return w2v
