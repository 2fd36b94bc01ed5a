"""A word vocabulary: counts, a frequency cut-off, most frequent first.

Ids are ranks: id 0 is the most frequent word. That order is what word2vec and gensim use, and
what "the most frequent ``restrict_vocab`` words" in analogy evaluation relies on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch

from multicon.progress import progress as progress_bar


class Vocabulary:
    """Words sorted by count (ties broken alphabetically), with their counts.

    Args:
        words: the words, most frequent first.
        counts: their corpus counts, same order.

    Example:
        >>> vocab = Vocabulary.from_counts({"a": 3, "b": 1, "c": 2}, min_count=2)
        >>> vocab.words, vocab.counts.tolist(), vocab["c"], len(vocab)
        (['a', 'c'], [3, 2], 1, 2)
        >>> vocab.encode(["c", "zzz", "a"]).tolist()
        [1, -1, 0]
    """

    def __init__(self, words: list[str], counts: list[int] | torch.Tensor) -> None:
        counts = torch.as_tensor(counts, dtype=torch.long)
        if len(words) != len(counts):
            raise ValueError(f"{len(words)} words but {len(counts)} counts")
        if len(set(words)) != len(words):
            raise ValueError("vocabulary words must be unique")
        for w in words:
            if not w or any(c.isspace() for c in w):
                raise ValueError(f"vocabulary word {w!r} is empty or contains whitespace")
        self.words = list(words)
        self.counts = counts
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def from_counts(
        cls, counts: Counter | dict[str, int], *, min_count: int = 1, max_size: int | None = None
    ) -> Vocabulary:
        """Keep words seen at least ``min_count`` times, at most ``max_size`` most frequent."""
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be >= 1 or None, got {max_size}")
        if not counts:
            raise ValueError("cannot build a vocabulary from an empty corpus (no words counted)")
        kept = sorted(
            ((w, c) for w, c in counts.items() if c >= min_count), key=lambda wc: (-wc[1], wc[0])
        )
        if not kept:
            top = max(counts.values())
            raise ValueError(
                f"vocabulary is empty: no word occurs min_count={min_count} times "
                f"({len(counts)} distinct words, the most frequent occurs {top} times)"
            )
        kept = kept[:max_size]
        return cls([w for w, _ in kept], [c for _, c in kept])

    @classmethod
    def build(
        cls,
        sentences: Iterable[list[str]],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        progress: bool = False,
    ) -> Vocabulary:
        """Count the words of tokenized ``sentences`` and cut as in `from_counts`.
        ``progress``: a tqdm bar counting words (main process only)."""
        counter: Counter = Counter()
        total = getattr(sentences, "max_words", None)  # a `TextCorpus` slice knows its length
        with progress_bar(enabled=progress, total=total, desc="vocabulary", unit="word") as bar:
            for sentence in sentences:
                counter.update(sentence)
                bar.update(len(sentence))
        return cls.from_counts(counter, min_count=min_count, max_size=max_size)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: str) -> bool:
        return word in self.index

    def __getitem__(self, word: str) -> int:
        return self.index[word]

    @property
    def total(self) -> int:
        """Total count of in-vocabulary words."""
        return int(self.counts.sum())

    def encode(self, words: Iterable[str], unknown: int = -1) -> torch.Tensor:
        """Ids of ``words``; out-of-vocabulary words get ``unknown``."""
        get = self.index.get
        return torch.tensor([get(w, unknown) for w in words], dtype=torch.long)

    def save(self, path: str | Path) -> None:
        """Write ``word<TAB>count`` lines, most frequent first (UTF-8)."""
        with open(path, "w", encoding="utf-8") as f:
            for w, c in zip(self.words, self.counts.tolist(), strict=True):
                f.write(f"{w}\t{c}\n")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a file written by `save`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"vocabulary file not found: {path}")
        words, counts = [], []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 2 or not parts[1].isdigit():
                    raise ValueError(f"{path}:{n}: expected 'word<TAB>count', got {line!r}")
                words.append(parts[0])
                counts.append(int(parts[1]))
        return cls(words, counts)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, {self.total} tokens)"
