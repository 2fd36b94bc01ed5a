"""Word-vector evaluation: analogies (3CosAdd), word-pair similarity (Spearman ρ), neighbours.

Conventions follow word2vec's compute-accuracy and gensim's ``evaluate_word_analogies`` /
``evaluate_word_pairs`` so figures compare: words are lowercased; an analogy is answered only if
its four words are among the ``restrict_vocab`` most frequent words (ids are frequency ranks), the
others are counted as out-of-vocabulary; the answer is the nearest word to ``b - a + c`` by
cosine among those words, excluding ``a``, ``b`` and ``c``; similarity pairs with an unknown word
are counted and skipped. A score with nothing to measure it on (no question answered, fewer than
two known pairs) is ``None``, never 0 or NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # multicon.text imports this module
    from multicon.text.vocab import Vocabulary


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return F.normalize(vectors.detach().float(), dim=1)


def most_similar(
    vectors: torch.Tensor,
    vocab: Vocabulary,
    positive: list[str] | str,
    negative: list[str] | tuple[str, ...] = (),
    *,
    topn: int = 10,
    restrict_vocab: int | None = None,
) -> list[tuple[str, float]]:
    """The ``topn`` words nearest by cosine to ``Σ positive - Σ negative`` (inputs excluded).

    Example:
        >>> from multicon.text import Vocabulary
        >>> vocab = Vocabulary(["a", "b", "c"], [3, 2, 1])
        >>> vecs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> [w for w, _ in most_similar(vecs, vocab, "a", topn=2)]
        ['b', 'c']
    """
    positive = [positive] if isinstance(positive, str) else list(positive)
    unknown = [w for w in [*positive, *negative] if w not in vocab]
    if unknown:
        raise KeyError(f"words not in the vocabulary: {unknown}")
    if not positive:
        raise ValueError("most_similar needs at least one positive word")
    unit = _unit(vectors)[:restrict_vocab]
    target = unit[vocab.encode(positive)].sum(0) - unit[vocab.encode(list(negative))].sum(0)
    sims = unit @ F.normalize(target, dim=0)
    used = [vocab[w] for w in [*positive, *negative] if vocab[w] < len(unit)]
    sims[used] = float("-inf")
    top = sims.topk(min(topn, len(sims) - len(used)))
    return [(vocab.words[i], float(s)) for s, i in zip(top.values, top.indices, strict=True)]


@dataclass
class AnalogyResult:
    """Per-section ``(correct, answered)``, the total accuracy, and out-of-vocabulary questions."""

    sections: dict[str, tuple[int, int]] = field(default_factory=dict)
    oov: int = 0

    @property
    def correct(self) -> int:
        return sum(c for c, _ in self.sections.values())

    @property
    def answered(self) -> int:
        return sum(n for _, n in self.sections.values())

    @property
    def accuracy(self) -> float | None:
        """Correct / answered, over all sections (gensim's "Total accuracy"); None when no
        question was answered (every one out of the vocabulary)."""
        return self.correct / self.answered if self.answered else None

    @property
    def oov_ratio(self) -> float:
        total = self.answered + self.oov
        return self.oov / total if total else 0.0

    def section_accuracy(self) -> dict[str, float | None]:
        """Accuracy per section; None for a section with no question answered."""
        return {s: c / n if n else None for s, (c, n) in self.sections.items()}


def _read_lines(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"evaluation file not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_analogies(path: str | Path) -> dict[str, list[tuple[str, str, str, str]]]:
    """Sections of lowercased ``a b c d`` questions from a questions-words file."""
    sections: dict[str, list[tuple[str, str, str, str]]] = {}
    current = None
    for n, line in enumerate(_read_lines(path), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            current = line[1:].strip()
            sections.setdefault(current, [])
            continue
        words = line.lower().split()
        if len(words) != 4:
            raise ValueError(f"{path}:{n}: an analogy needs 4 words, got {line!r}")
        if current is None:
            raise ValueError(f"{path}:{n}: question before the first ': section' header")
        sections[current].append(tuple(words))  # type: ignore[arg-type]
    return sections


@torch.no_grad()
def evaluate_analogies(
    vectors: torch.Tensor,
    vocab: Vocabulary,
    path: str | Path,
    *,
    restrict_vocab: int = 30_000,
    chunk: int = 1024,
) -> AnalogyResult:
    """3CosAdd accuracy on a questions-words file, over the ``restrict_vocab`` most frequent words.

    Example:
        >>> import tempfile, os
        >>> from multicon.text import Vocabulary
        >>> vocab = Vocabulary(["a", "b", "c", "d"], [4, 3, 2, 1])
        >>> vecs = torch.tensor([[1.0, 0, 0], [1.0, 1, 0], [0.0, 0, 1], [0.0, 1, 1]])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "q.txt")
        ...     _ = open(path, "w").write(": toy\\na b c d\\na b c zzz\\n")
        ...     r = evaluate_analogies(vecs, vocab, path)
        >>> r.sections, r.oov
        ({'toy': (1, 1)}, 1)
    """
    if restrict_vocab < 1:
        raise ValueError(f"restrict_vocab must be >= 1, got {restrict_vocab}")
    unit = _unit(vectors)[:restrict_vocab]
    n_words = len(unit)
    result = AnalogyResult()
    for name, questions in read_analogies(path).items():
        ids = [[vocab.index.get(w, n_words) for w in q] for q in questions]
        known = torch.tensor([max(q) < n_words for q in ids], dtype=torch.bool)
        ids_t = torch.tensor(ids, dtype=torch.long).view(-1, 4)[known]
        result.oov += int((~known).sum())
        correct = 0
        for start in range(0, len(ids_t), chunk):
            q = ids_t[start : start + chunk]
            a, b, c, d = q.unbind(1)
            target = unit[b] - unit[a] + unit[c]
            sims = target @ unit.T
            rows = torch.arange(len(q))
            for col in (a, b, c):
                sims[rows, col] = float("-inf")
            correct += int((sims.argmax(1) == d).sum())
        result.sections[name] = (correct, len(ids_t))
    return result


@dataclass
class SimilarityResult:
    """Spearman ρ between cosine similarity and human scores, over the pairs with known words
    (None when fewer than two pairs are known)."""

    spearman: float | None
    pairs: int
    oov: int


def read_word_pairs(path: str | Path) -> list[tuple[str, str, float]]:
    """``(word1, word2, score)`` from a WS-353 / SimLex-999 style file (tab or space separated,
    ``#`` comments)."""
    pairs = []
    for n, line in enumerate(_read_lines(path), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        try:
            pairs.append((parts[0].strip().lower(), parts[1].strip().lower(), float(parts[2])))
        except (IndexError, ValueError):
            raise ValueError(f"{path}:{n}: expected 'word1 word2 score', got {line!r}") from None
    return pairs


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman's rank correlation (ties get their average rank).

    Example:
        >>> spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 20, 40]))
        0.9486...
    """

    def ranks(v: torch.Tensor) -> torch.Tensor:
        v = v.double()
        order = v.argsort()
        r = torch.empty_like(v)
        r[order] = torch.arange(1, len(v) + 1, dtype=torch.float64)
        uniq, inverse = torch.unique(v, return_inverse=True)
        sums = torch.zeros(len(uniq), dtype=torch.float64).index_add_(0, inverse, r)
        counts = torch.zeros(len(uniq), dtype=torch.float64).index_add_(
            0, inverse, torch.ones_like(r)
        )
        return (sums / counts)[inverse]

    rx, ry = ranks(x), ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = float(rx.norm() * ry.norm())
    return float((rx * ry).sum()) / denom if denom else 0.0


@torch.no_grad()
def evaluate_similarity(
    vectors: torch.Tensor, vocab: Vocabulary, path: str | Path
) -> SimilarityResult:
    """Spearman ρ of cosine similarity against the human scores of a word-pair file."""
    unit = _unit(vectors)
    sims, gold, oov = [], [], 0
    for w1, w2, score in read_word_pairs(path):
        if w1 not in vocab or w2 not in vocab:
            oov += 1
            continue
        sims.append(float(unit[vocab[w1]] @ unit[vocab[w2]]))
        gold.append(score)
    if len(sims) < 2:
        return SimilarityResult(None, len(sims), oov)
    return SimilarityResult(spearman(torch.tensor(sims), torch.tensor(gold)), len(sims), oov)
