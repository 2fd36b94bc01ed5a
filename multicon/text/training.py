"""word2vec in one call, as gensim's ``Word2Vec(sentences, vector_size=..., ...)``.

`train_word2vec` wires the parts a longer script would (vocabulary, token cache,
`ContextPairs`, the model, `Trainer`) with gensim's defaults. The recipe
(`recipes/word2vec_text8.py`) does the same with evaluation, reports and the Hub.

The corpus is read once and encoded sentence by sentence into memory-mapped token-id files (a
token cache, `multicon.data.token_cache`); the pairs are read from those files block by block.
Memory does not grow with the corpus: a file, a `datasets` streaming dataset or a generator
larger than memory trains. Without ``token_cache`` the files go to a temporary folder (4 bytes
a token, about twice that while they are built) removed after training.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from multicon import native
from multicon.data.corpus import TextCorpus
from multicon.data.token_cache import cached_encoding, dataset_identity, file_identity
from multicon.methods import sgns
from multicon.pairs.context import ContextPairs
from multicon.steps.fused_skipgram import FusedSkipGram
from multicon.steps.hogbatch import HogBatchSkipGram
from multicon.text.word2vec import Word2Vec
from multicon.train import TrainConfig, Trainer


def train_word2vec(
    sentences: Iterable[list[str]] | str | Path | Any,
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
    shuffle_blocks: int = 16,
    seed: int = 0,
    kernel: Literal["auto", "fused", "hogbatch", "torch"] = "auto",
    output_dir: str | Path | None = None,
    text_column: str = "text",
    token_cache: str | Path | None = None,
    corpus_name: str | None = None,
) -> Word2Vec:
    """Train skip-gram word vectors with negative sampling; returns the `Word2Vec`.

    Args:
        sentences: tokenized sentences (a list of lists of words, a `TextCorpus`, a generator:
            read once), a text file path (read with `TextCorpus.from_file`: lowercased words),
            or a `datasets.Dataset` / streaming `datasets.IterableDataset` whose
            ``text_column`` holds one text per row (lowercased words, as a file).
        dim, window, min_count, negative, ns_exponent, sample, epochs: gensim's ``vector_size``,
            ``window``, ``min_count``, ``negative``, ``ns_exponent``, ``sample``, ``epochs``,
            with its defaults. ``max_vocab``: keep at most this many words.
        lr: initial learning rate (gensim's ``alpha``), decayed linearly to 0.
        batch_size: pairs per step.
        shuffle_blocks: blocks of 65,536 corpus words whose pairs are shuffled together, as the
            recipe's ``--shuffle_blocks`` (docs/word2vec.md): wider mixes more, costs memory.
        seed: seeds the tables, the pairs and the noise words.
        kernel: ``"fused"`` (word2vec's per-pair loop in C, `FusedSkipGram`), ``"hogbatch"``
            (the C loop whose noise words a window shares, `HogBatchSkipGram`: faster on a CPU),
            ``"torch"`` (the engine's batched step, 16 noise words shared by 256 pairs), or
            ``"auto"``: fused when a C compiler is found. Threads: ``torch.set_num_threads``.
        output_dir: where the trainer writes checkpoints (``None``: a temporary folder, removed).
        text_column: the text column of a `datasets` corpus.
        token_cache: a folder to keep the corpus's token ids and vocabulary in and reuse on a
            later call with the same corpus and ``min_count`` / ``max_vocab`` (a folder built
            from another corpus or vocabulary is refused with a ValueError). ``None``: a
            temporary folder, removed after training.
        corpus_name: names the corpus in the cache's key; required with ``token_cache`` for a
            corpus that has no identity of its own (a streaming dataset, a generator, a
            `TextCorpus`): a file is known by its path, size and date, a `Dataset` by its
            fingerprint, a list by its content.

    Example:
        >>> topics = [[f"t{t}w{i % 4}" for i in range(t, t + 12)] for t in range(6)] * 60
        >>> w2v = train_word2vec(topics, dim=16, window=3, min_count=1, sample=0, epochs=3)
        >>> w2v.most_similar("t0w0", topn=3)[0][0].startswith("t0")
        True
    """
    if kernel not in ("auto", "fused", "hogbatch", "torch"):
        raise ValueError(f"kernel must be 'auto', 'fused', 'hogbatch' or 'torch', got {kernel!r}")
    if shuffle_blocks < 1:
        raise ValueError(f"shuffle_blocks must be >= 1, got {shuffle_blocks}")
    if kernel == "auto":
        kernel = "fused" if native.available("sgns") else "torch"
    with tempfile.TemporaryDirectory() as tmp:
        if token_cache is None:
            key: dict[str, Any] = {"corpus": "temporary"}
            folder = Path(tmp) / "token_cache"
        else:
            key, folder = _cache_key(sentences, text_column, corpus_name), Path(token_cache)
        vocab, encoded = cached_encoding(
            _sentences(sentences, text_column), key, folder, min_count=min_count, max_size=max_vocab
        )
        torch.manual_seed(seed)
        w2v = Word2Vec.from_vocab(vocab, dim)
        if kernel in ("fused", "hogbatch"):
            c_step = FusedSkipGram if kernel == "fused" else HogBatchSkipGram
            model, step = w2v, c_step(w2v, negative=negative, ns_exponent=ns_exponent)
        else:
            model = sgns(w2v, negative, ns_exponent, shared_negatives=16, noise_group=256)
            step = None
        pairs = ContextPairs(
            encoded,
            vocab.counts,
            window=window,
            sample=sample,
            shuffle_blocks=shuffle_blocks,
            seed=seed,
        )
        config = TrainConfig(
            output_dir=str(output_dir or Path(tmp) / "run"),
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


def _is_dataset(obj: Any) -> bool:
    """A `datasets.Dataset` or `IterableDataset` (without importing `datasets`)."""
    return any(c.__module__.split(".")[0] == "datasets" for c in type(obj).__mro__)


def _sentences(sentences: Any, text_column: str) -> Iterable[list[str]]:
    if isinstance(sentences, str | Path):
        return TextCorpus.from_file(sentences)
    if _is_dataset(sentences):
        return TextCorpus.from_dataset(sentences, text_column)
    return sentences


def _cache_key(sentences: Any, text_column: str, corpus_name: str | None) -> dict[str, Any]:
    """What identifies the corpus and its tokenization, for a kept token cache."""
    named = {"name": corpus_name} if corpus_name else {}
    corpus: dict[str, Any]
    if isinstance(sentences, str | Path):
        corpus = {**file_identity(sentences), "tokenizer": "lowercase"}
    elif _is_dataset(sentences):
        has_fingerprint = bool(getattr(sentences, "_fingerprint", None))
        if not (has_fingerprint or corpus_name):
            raise ValueError(
                "token_cache: a streaming dataset has no content fingerprint to key its cache; "
                "pass corpus_name (the Hub id or path it was loaded from)"
            )
        identity = dataset_identity(sentences, corpus_name)
        corpus = {**identity, "column": text_column, "tokenizer": "lowercase"}
    elif isinstance(sentences, Sequence):  # in memory already: its content is its identity
        digest = hashlib.sha256()
        for sentence in sentences:
            digest.update("\x1f".join(sentence).encode() + b"\x1e")
        corpus = {"sentences_sha256": digest.hexdigest()}
    elif corpus_name:
        corpus = {}
    else:
        raise ValueError(
            f"token_cache: a {type(sentences).__name__} corpus has no identity of its own to key "
            "its cache (it may differ on the next call); pass corpus_name, or leave token_cache "
            "None for a temporary cache"
        )
    return {"corpus": {**corpus, **named}, "max_sentence_words": 10_000}
