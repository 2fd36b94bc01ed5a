"""Text corpora as re-iterable streams of tokenized sentences, and their token-id form.

Three sources, one shape (an iterable of ``list[str]`` sentences):

* a text file (plain or ``.gz``), one sentence per line; a text8-style file is one huge line and
  is cut into sentences of ``max_sentence_words`` words (gensim cuts at 10,000);
* a `datasets` text column, from a `Dataset` or a streaming `IterableDataset`;
* anything else iterable that yields strings, via `TextCorpus(lambda: ...)`.

Files are read in blocks, never as one string, so a 100 MB single-line file does not need 100 MB
of Python ``str`` at once. `encode_corpus` turns a corpus into the ``int32`` token-id tensor the
context-pair generator samples from, dropping out-of-vocabulary words as word2vec does; for a
corpus larger than memory, `multicon.data.token_cache.cached_encoding` writes the same ids to
memory-mapped files instead, once, and reuses them.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from multicon.data.token_cache import MappedArray
from multicon.progress import progress as progress_bar
from multicon.text.vocab import Vocabulary

Tokenizer = Callable[[str], list[str]]

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def lowercase_words(text: str) -> list[str]:
    """The default tokenizer: lowercase runs of letters/digits (inner apostrophes kept).

    Example:
        >>> lowercase_words("The cat's hat, 3 times!")
        ['the', "cat's", 'hat', '3', 'times']
    """
    return _WORD.findall(text.lower())


def whitespace_words(text: str) -> list[str]:
    """Split on whitespace only: for corpora already normalised (text8, enwiki17m).

    Example:
        >>> whitespace_words("anarchism originated  as")
        ['anarchism', 'originated', 'as']
    """
    return text.split()


def transformers_tokenizer(name_or_path: str) -> Tokenizer:
    """A tokenizer from `transformers` (a Hub name or a local folder) as ``str -> list[str]``."""
    from multicon.encoders.tokenization import auto_tokenizer

    return auto_tokenizer(name_or_path).tokenize


def sentencepiece_tokenizer(model_file: str | Path) -> Tokenizer:
    """A sentencepiece model file as ``str -> list[str]`` (pieces, e.g. ``'▁the'``)."""
    import sentencepiece as spm

    if not Path(model_file).is_file():
        raise FileNotFoundError(f"sentencepiece model not found: {model_file}")
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    return lambda text: sp.encode(text, out_type=str)


@dataclass
class CorpusStats:
    """What the last pass over a corpus saw."""

    sentences: int = 0
    words: int = 0
    skipped_undecodable: int = 0  # lines (or line pieces) dropped for invalid UTF-8


@dataclass
class TextCorpus:
    """A re-iterable corpus: each iteration yields tokenized sentences (``list[str]``).

    Args:
        texts: a zero-argument callable returning a fresh iterator of raw text pieces, each
            piece tagged with whether it ends a sentence: ``(text, ends_sentence)``.
        tokenizer: ``str -> list[str]``.
        max_sentence_words: longer sentences are cut into pieces of this many words.
        max_words: stop after this many words (a slice of a big corpus), or ``None``.

    Example:
        >>> corpus = TextCorpus.from_texts(["A cat sat.", "", "The dog sat."])
        >>> list(corpus)
        [['a', 'cat', 'sat'], ['the', 'dog', 'sat']]
        >>> corpus.stats.words
        6
    """

    texts: Callable[[], Iterator[tuple[str, bool]]]
    tokenizer: Tokenizer = lowercase_words
    max_sentence_words: int = 10_000
    max_words: int | None = None
    stats: CorpusStats = field(default_factory=CorpusStats)
    source: Any = field(default=None, repr=False)  # the file path or dataset read (cache keys)

    def __post_init__(self) -> None:
        if self.max_sentence_words < 1:
            raise ValueError(f"max_sentence_words must be >= 1, got {self.max_sentence_words}")
        if self.max_words is not None and self.max_words < 1:
            raise ValueError(f"max_words must be >= 1 or None, got {self.max_words}")

    # -- sources ------------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: Iterable[str], **kwargs: Any) -> TextCorpus:
        """One sentence per string of a re-iterable collection (a list, a tuple)."""
        return cls(lambda: ((t, True) for t in texts), **kwargs)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        *,
        on_decode_error: str = "raise",
        block_bytes: int = 1 << 20,
        **kwargs: Any,
    ) -> TextCorpus:
        """A text file, plain or gzip (``.gz``), one sentence per line.

        Args:
            on_decode_error: ``"raise"`` (a ValueError naming the file and byte offset) or
                ``"skip"`` (drop the undecodable line, counted in ``stats.skipped_undecodable``).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"corpus file not found: {path}")
        if on_decode_error not in ("raise", "skip"):
            raise ValueError(f"on_decode_error must be 'raise' or 'skip', got {on_decode_error!r}")
        corpus = cls(lambda: iter(()), source=path, **kwargs)
        corpus.texts = lambda: _file_pieces(path, block_bytes, on_decode_error, corpus.stats)
        return corpus

    @classmethod
    def from_dataset(cls, dataset: Any, column: str = "text", **kwargs: Any) -> TextCorpus:
        """A text column of a `datasets.Dataset` or streaming `datasets.IterableDataset`.

        Each row is one sentence (a document); iterating a streaming dataset again re-streams it.
        """
        names = getattr(dataset, "column_names", None)
        if names is not None and column not in names:
            raise ValueError(f"dataset has no column {column!r}; its columns are {names}")

        def pieces() -> Iterator[tuple[str, bool]]:
            for row in dataset:
                if column not in row:  # a stream's columns are known only from its rows
                    raise ValueError(f"dataset has no column {column!r}; its rows have {list(row)}")
                text = row[column]
                if not isinstance(text, str):
                    raise ValueError(f"column {column!r} holds {type(text).__name__}, not text")
                yield text, True

        return cls(pieces, source=dataset, **kwargs)

    # -- iteration ----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[list[str]]:
        self.stats.sentences = self.stats.words = self.stats.skipped_undecodable = 0
        budget = self.max_words
        sentence: list[str] = []
        for text, ends in self.texts():
            words = self.tokenizer(text)
            if budget is not None and len(words) >= budget - self.stats.words:
                words = words[: budget - self.stats.words]
                ends = True
            self.stats.words += len(words)
            sentence.extend(words)
            while len(sentence) >= self.max_sentence_words:
                yield from self._emit(sentence[: self.max_sentence_words])
                sentence = sentence[self.max_sentence_words :]
            if ends and sentence:
                yield from self._emit(sentence)
                sentence = []
            if budget is not None and self.stats.words >= budget:
                return
        if sentence:
            yield from self._emit(sentence)

    def _emit(self, sentence: list[str]) -> Iterator[list[str]]:
        self.stats.sentences += 1
        yield sentence


def _file_pieces(
    path: Path, block_bytes: int, on_decode_error: str, stats: CorpusStats
) -> Iterator[tuple[str, bool]]:
    """Yield ``(text, ends_sentence)`` pieces of a file, cut only at ASCII whitespace.

    A cut at an ASCII byte never splits a UTF-8 character, so every piece decodes on its own.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    offset = 0  # byte offset of `carry` in the (uncompressed) file
    carry = b""
    with opener(path, "rb") as f:
        while True:
            try:
                block = f.read(block_bytes)
            except (EOFError, OSError, zlib.error) as err:  # gzip's errors never name the file
                raise ValueError(
                    f"{path}: the file is truncated or corrupt: reading its text after byte "
                    f"{offset + len(carry)} failed ({err})"
                ) from None
            data = carry + block
            if not data:
                return
            lines = data.split(b"\n")
            if block:  # the last line may continue in the next block
                carry = lines.pop()
                if not lines:  # a line longer than a block: cut it at its last space
                    cut = carry.rfind(b" ")
                    if cut < 0:
                        continue
                    piece, carry = carry[:cut], carry[cut + 1 :]
                    yield from _decode(piece, False, path, offset, on_decode_error, stats)
                    offset += cut + 1
                    continue
            else:
                carry = b""
            for line in lines:
                yield from _decode(line, True, path, offset, on_decode_error, stats)
                offset += len(line) + 1
            if not block:
                return


def _decode(
    raw: bytes, ends: bool, path: Path, offset: int, on_error: str, stats: CorpusStats
) -> Iterator[tuple[str, bool]]:
    try:
        yield raw.decode("utf-8"), ends
    except UnicodeDecodeError as e:
        if on_error == "raise":
            raise ValueError(
                f"{path}: invalid UTF-8 at byte {offset + e.start} ({e.reason}); pass "
                "on_decode_error='skip' to drop such lines"
            ) from None
        stats.skipped_undecodable += 1
        if ends:
            yield "", True  # still end the sentence the bad line belonged to


@dataclass
class EncodedCorpus:
    """A corpus as in-vocabulary token ids, in memory (tensors) or on disk (`MappedArray`).

    `multicon.data.token_cache.cached_encoding` gives one whose ids and offsets are memory-mapped
    files; `ContextPairs` reads either kind in ranges (`read_ids`, `sentence_of`), so a corpus on
    disk is never loaded whole.

    Attributes:
        ids: ``(N,)`` int32 token ids, sentences back to back.
        offsets: ``(S + 1,)`` int64 start of each sentence in ``ids``, then ``N``.
        raw_words: words read, including out-of-vocabulary ones.
    """

    ids: torch.Tensor | MappedArray
    offsets: torch.Tensor | MappedArray
    raw_words: int

    def __post_init__(self) -> None:
        if isinstance(self.offsets, torch.Tensor) and self.offsets.dim() != 1:
            raise ValueError("offsets must be 1-d, start each sentence, and end at len(ids)")
        if len(self.offsets) < 1 or int(self.offsets[-1]) != len(self.ids):
            raise ValueError("offsets must be 1-d, start each sentence, and end at len(ids)")

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    @property
    def num_sentences(self) -> int:
        return len(self.offsets) - 1

    def read_ids(self, start: int, stop: int) -> torch.Tensor:
        """Token ids ``start:stop`` (a view of an in-memory corpus, a copy from disk)."""
        return self.ids[start:stop]

    def read_offsets(self, start: int, stop: int) -> torch.Tensor:
        """Sentence offsets ``start:stop``."""
        return self.offsets[start:stop]

    def sentence_of(self, position: int) -> int:
        """The index of the sentence holding token ``position``."""
        if isinstance(self.offsets, MappedArray):
            return self.offsets.searchsorted(position, right=True) - 1
        return int(torch.searchsorted(self.offsets, position, right=True)) - 1

    def sentence_ids(self) -> torch.Tensor:
        """``(N,)`` int32 index of the sentence each token belongs to (the whole corpus)."""
        lengths = self.read_offsets(0, len(self.offsets)).diff()
        return torch.repeat_interleave(
            torch.arange(len(lengths), dtype=torch.int32), lengths, output_size=len(self.ids)
        )


def encode_corpus(
    corpus: Iterable[list[str]], vocab: Vocabulary, *, progress: bool = False
) -> EncodedCorpus:
    """Token ids of every in-vocabulary word; sentences left empty are dropped.
    ``progress``: a tqdm bar counting words (main process only).

    Example:
        >>> vocab = Vocabulary.from_counts({"a": 2, "b": 1})
        >>> enc = encode_corpus([["a", "x", "b"], ["x"], ["a"]], vocab)
        >>> enc.ids.tolist(), enc.offsets.tolist(), enc.raw_words
        ([0, 1, 0], [0, 2, 3], 5)
    """
    get = vocab.index.get
    chunks: list[torch.Tensor] = []
    lengths: list[int] = []
    raw = 0
    total = getattr(corpus, "max_words", None)
    with progress_bar(enabled=progress, total=total, desc="token ids", unit="word") as bar:
        for sentence in corpus:
            raw += len(sentence)
            ids = [i for i in map(get, sentence) if i is not None]
            if ids:
                chunks.append(torch.tensor(ids, dtype=torch.int32))
                lengths.append(len(ids))
            bar.update(len(sentence))
    if not chunks:
        raise ValueError(
            f"corpus has no in-vocabulary words ({raw} words read, vocabulary of {len(vocab)})"
        )
    offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
    offsets[1:] = torch.tensor(lengths).cumsum(0)
    return EncodedCorpus(torch.cat(chunks), offsets, raw)
