"""Loaders for real datasets (local files first, the Hub when online) and text corpora."""

from multicon.data.corpus import EncodedCorpus, TextCorpus, encode_corpus
from multicon.data.digits import ImageSplit, load_digits

__all__ = ["EncodedCorpus", "ImageSplit", "TextCorpus", "encode_corpus", "load_digits"]
