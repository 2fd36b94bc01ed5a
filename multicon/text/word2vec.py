"""The word2vec model users keep: two embedding tables and the vocabulary, saved together.

It knows no engine: `multicon.methods.sgns(w2v)` trains it with the shared engine (input table
as query encoder, output table as key encoder, noise keys from unigram^0.75, the sigmoid loss),
`multicon.methods.word2vec_infonce(w2v)` with InfoNCE over in-batch or queued context words, and
`multicon.steps.FusedSkipGram(w2v)` with word2vec's own per-pair loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F

from multicon.encoders.embedding import EmbeddingTable
from multicon.eval.words import most_similar
from multicon.hub.model import HubModel
from multicon.hub.push import WORD2VEC_BINARY
from multicon.text.vocab import Vocabulary
from multicon.text.word2vec_format import save_word2vec_format

VOCAB_FILE = "vocab.txt"


class Word2Vec(HubModel, tags=["word2vec", "word-embeddings"]):
    """Input (word) and output (context) embedding tables over a `Vocabulary`.

    Args:
        vocab_size: number of words.
        dim: vector dimension.
        sparse: sparse gradients for both tables.
        vocab: the words; required to look words up, saved as ``vocab.txt`` beside the weights
            (a file argument of `HubModel`, never in ``config.json``).

    Example:
        >>> import tempfile
        >>> vocab = Vocabulary(["the", "cat", "sat"], [5, 2, 1])
        >>> w2v = Word2Vec(len(vocab), dim=8, vocab=vocab)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     w2v.save_pretrained(folder)
        ...     again = Word2Vec.from_pretrained(folder)
        >>> again.vocab.words, bool(torch.equal(again.vectors, w2v.vectors))
        (['the', 'cat', 'sat'], True)
        >>> "cat" in w2v, w2v["cat"].shape, w2v[["the", "sat"]].shape
        (True, torch.Size([8]), torch.Size([2, 8]))
        >>> round(w2v.similarity("cat", "cat"), 4)
        1.0
    """

    example_input = "torch.tensor([0, 1, 2])"
    file_args = ("vocab",)

    @classmethod
    def usage_example(cls, repo_id: str) -> str:
        """The card's snippet: embed ids, look words up, and load ``vectors.bin`` in gensim."""
        return "\n".join(
            [
                super().usage_example(repo_id),
                "word = model.vocab.words[0]",
                "print(word, model.most_similar(word, topn=5))  # as gensim's KeyedVectors",
                "# vectors.bin beside the weights holds the same vectors in the word2vec C binary",
                "# format, for gensim (from gensim.models import KeyedVectors):",
                '# vectors = KeyedVectors.load_word2vec_format("vectors.bin", binary=True)',
            ]
        )

    def __init__(
        self,
        vocab_size: int,
        dim: int = 100,
        *,
        sparse: bool = True,
        vocab: Vocabulary | None = None,
    ) -> None:
        super().__init__()
        if vocab is not None and len(vocab) != vocab_size:
            raise ValueError(f"vocab has {len(vocab)} words but vocab_size is {vocab_size}")
        self.vocab = vocab
        self.input_embeddings = EmbeddingTable(vocab_size, dim, init="uniform", sparse=sparse)
        self.output_embeddings = EmbeddingTable(vocab_size, dim, init="zeros", sparse=sparse)

    @classmethod
    def from_vocab(cls, vocab: Vocabulary, dim: int = 100, *, sparse: bool = True) -> Word2Vec:
        return cls(len(vocab), dim, sparse=sparse, vocab=vocab)

    @property
    def vectors(self) -> torch.Tensor:
        """``(V, D)`` word vectors (the input table, as word2vec and gensim export)."""
        return self.input_embeddings.weight.detach()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Word vectors of ``ids``."""
        return self.input_embeddings(ids)

    def require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise ValueError("this Word2Vec has no vocabulary; pass vocab= when creating it")
        return self.vocab

    # -- look-ups by word, as gensim's KeyedVectors (``"king" in wv``, ``wv["king"]``) -------
    def __contains__(self, word: str) -> bool:
        return word in self.require_vocab()

    def __getitem__(self, words: str | Sequence[str]) -> torch.Tensor:
        """The vector ``(D,)`` of a word, or ``(n, D)`` of a list of words."""
        vocab = self.require_vocab()
        batch = [words] if isinstance(words, str) else list(words)
        unknown = [w for w in batch if w not in vocab]
        if unknown:
            raise KeyError(f"words not in the vocabulary: {unknown}")
        vectors = self.vectors[vocab.encode(batch)]
        return vectors[0] if isinstance(words, str) else vectors

    def similarity(self, word1: str, word2: str) -> float:
        """Cosine similarity of two words' vectors."""
        a, b = self[[word1, word2]]
        return float(F.cosine_similarity(a, b, dim=0))

    def most_similar(
        self,
        positive: list[str] | str,
        negative: list[str] | tuple[str, ...] = (),
        topn: int = 10,
    ) -> list[tuple[str, float]]:
        """Nearest words by cosine (see `multicon.eval.words.most_similar`)."""
        return most_similar(self.vectors, self.require_vocab(), positive, negative, topn=topn)

    def save_word2vec_format(self, path: str | Path, *, binary: bool = False) -> None:
        """Export the word vectors in the word2vec C text or binary format."""
        save_word2vec_format(path, self.require_vocab().words, self.vectors, binary=binary)

    # -- the Hub format: weights + config.json + vocab.txt, and vectors.bin for gensim -------
    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        self.require_vocab().save(Path(save_directory) / VOCAB_FILE)
        # what gensim's KeyedVectors.load_word2vec_format and word2vec C read; so a pushed repo
        # serves them too (from_pretrained never downloads it: it reads the safetensors)
        self.save_word2vec_format(Path(save_directory) / WORD2VEC_BINARY, binary=True)

    @classmethod
    def _from_folder(cls, folder: Path, **config) -> Word2Vec:
        return cls(**config, vocab=Vocabulary.load(Path(folder) / VOCAB_FILE))
