"""Words: vocabularies, the word2vec model and its file formats.

Training in one call, as gensim: `multicon.train_word2vec` (in `multicon.text.training`, which
this package does not import: it reads corpora with `multicon.data`, which imports this package).
"""

from multicon.text.vocab import Vocabulary
from multicon.text.word2vec import Word2Vec
from multicon.text.word2vec_format import load_word2vec_format, save_word2vec_format

__all__ = [
    "Vocabulary",
    "Word2Vec",
    "load_word2vec_format",
    "save_word2vec_format",
]
