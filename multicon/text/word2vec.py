"""The word2vec model users keep: two embedding tables and the vocabulary, saved together.

Training goes through the shared engine: `Word2Vec.contrastive_model` returns a
`ContrastiveModel` whose query encoder is the input table, key encoder the output table, whose
negatives are sampled from unigram^0.75 and whose loss is word2vec's logistic objective (SGNS).
Swapping the negatives for `InBatchNegatives` / `MomentumQueue` (with `LogQCorrection`) or the loss
for `InfoNCE` is a change of arguments, not of code path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from multicon.encoders.embedding import EmbeddingTable
from multicon.eval.words import most_similar
from multicon.hub.model import HubModel
from multicon.loss import NegativeSamplingLoss
from multicon.model import ContrastiveModel
from multicon.negatives import SampledNegatives
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

    def contrastive_model(
        self,
        *,
        negative: int = 5,
        ns_exponent: float = 0.75,
        shared_negatives: int = 0,
        noise_group: int | None = None,
        negatives: nn.Module | None = None,
        loss: nn.Module | None = None,
    ) -> ContrastiveModel:
        """The training model: centre word (query) → context word (key) over these tables.

        Defaults are word2vec's skip-gram with negative sampling: ``negative`` noise keys per
        pair drawn from ``counts ** ns_exponent``, the logistic loss summed over pairs (so plain
        SGD makes word2vec's update). ``shared_negatives=K`` instead draws ``K`` noise keys for
        every ``noise_group`` consecutive pairs (``None``: the whole batch), weighted
        ``negative / K`` (the same expected gradient) and scored with one batched matrix
        product: much faster on CPU, see docs/word2vec.md. Pass ``negatives`` / ``loss`` to swap
        either (e.g. in-batch negatives and InfoNCE).
        """
        if shared_negatives < 0:
            raise ValueError(f"shared_negatives must be >= 0, got {shared_negatives}")
        if noise_group is not None and not shared_negatives:
            raise ValueError("noise_group needs shared_negatives > 0 (noise keys per draw)")
        if negative < 1:
            raise ValueError(f"negative must be >= 1, got {negative}")
        if negatives is None:
            negatives = SampledNegatives(
                self.output_embeddings,
                self._require_vocab().counts,
                k=shared_negatives or negative,
                ns_exponent=ns_exponent,
                group_size=noise_group if shared_negatives else 1,
                embed_positives=True,  # context words are the output table's ids
            )
        if loss is None:
            weight = negative / shared_negatives if shared_negatives else 1.0
            loss = NegativeSamplingLoss(reduction="sum", negative_weight=weight)
        return ContrastiveModel(
            self.input_embeddings, self.output_embeddings, negatives=negatives, loss=loss
        )

    def _require_vocab(self) -> Vocabulary:
        if self.vocab is None:
            raise ValueError("this Word2Vec has no vocabulary; pass vocab= when creating it")
        return self.vocab

    # -- look-ups by word, as gensim's KeyedVectors (``"king" in wv``, ``wv["king"]``) -------
    def __contains__(self, word: str) -> bool:
        return word in self._require_vocab()

    def __getitem__(self, words: str | Sequence[str]) -> torch.Tensor:
        """The vector ``(D,)`` of a word, or ``(n, D)`` of a list of words."""
        vocab = self._require_vocab()
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
        return most_similar(self.vectors, self._require_vocab(), positive, negative, topn=topn)

    def save_word2vec_format(self, path: str | Path, *, binary: bool = False) -> None:
        """Export the word vectors in the word2vec C text or binary format."""
        save_word2vec_format(path, self._require_vocab().words, self.vectors, binary=binary)

    # -- the Hub format: weights + config.json + vocab.txt ----------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        self._require_vocab().save(Path(save_directory) / VOCAB_FILE)

    @classmethod
    def _from_folder(cls, folder: Path, **config) -> Word2Vec:
        return cls(**config, vocab=Vocabulary.load(Path(folder) / VOCAB_FILE))
