"""Corpora and vocabularies: the on-disk formats word2vec reads, and bad input."""

import gzip

import pytest
import torch

from multicon.data.corpus import (
    TextCorpus,
    encode_corpus,
    sentencepiece_tokenizer,
    whitespace_words,
)
from multicon.text.vocab import Vocabulary


def test_line_per_sentence_file_and_vocabulary(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("The cat sat.\n\nthe DOG sat on the mat\n", encoding="utf-8")
    corpus = TextCorpus.from_file(path)
    assert list(corpus) == [["the", "cat", "sat"], ["the", "dog", "sat", "on", "the", "mat"]]
    vocab = Vocabulary.build(corpus, min_count=2)
    assert vocab.words == ["the", "sat"] and vocab.counts.tolist() == [3, 2]
    enc = encode_corpus(corpus, vocab)
    assert enc.ids.tolist() == [0, 1, 0, 1, 0] and enc.offsets.tolist() == [0, 2, 5]
    assert enc.raw_words == 9


def test_single_line_corpus_is_cut_into_sentences_without_splitting_words(tmp_path):
    words = [f"w{i % 37}" for i in range(5000)]
    path = tmp_path / "text8.gz"
    with gzip.open(path, "wt") as f:
        f.write(" " + " ".join(words))  # text8 starts with a space and has no newline
    corpus = TextCorpus.from_file(
        path, tokenizer=whitespace_words, block_bytes=100, max_sentence_words=1000
    )
    sentences = list(corpus)
    assert [len(s) for s in sentences] == [1000] * 5
    assert sum(sentences, []) == words  # no word was cut at a block boundary
    cut = TextCorpus.from_file(path, max_words=1234, max_sentence_words=1000)
    assert [len(s) for s in cut] == [1000, 234]


def test_max_size_keeps_most_frequent_and_save_load(tmp_path):
    vocab = Vocabulary.from_counts({"a": 5, "b": 9, "c": 5, "d": 1}, max_size=3)
    assert vocab.words == ["b", "a", "c"]  # ties alphabetical
    vocab.save(tmp_path / "v.txt")
    again = Vocabulary.load(tmp_path / "v.txt")
    assert again.words == vocab.words and again.counts.tolist() == [9, 5, 5]


def test_datasets_column_and_streaming(tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"text": ["a b a", "c a"], "n": [1, 2]})
    assert list(TextCorpus.from_dataset(ds, "text")) == [["a", "b", "a"], ["c", "a"]]
    with pytest.raises(ValueError, match="no column 'body'"):
        TextCorpus.from_dataset(ds, "body")
    path = tmp_path / "lines.txt"
    path.write_text("x y\nz x\n")
    streamed = datasets.load_dataset("text", data_files=str(path), split="train", streaming=True)
    corpus = TextCorpus.from_dataset(streamed, "text")
    assert list(corpus) == [["x", "y"], ["z", "x"]]
    assert list(corpus) == [["x", "y"], ["z", "x"]]  # re-iterable: streams again


def test_sentencepiece_tokenizer(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    text = tmp_path / "train.txt"
    text.write_text("\n".join(["the quick brown fox jumps over the lazy dog"] * 50))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=30, minloglevel=2
    )
    corpus = TextCorpus.from_texts(
        ["the lazy fox"], tokenizer=sentencepiece_tokenizer(tmp_path / "sp.model")
    )
    pieces = next(iter(corpus))
    assert "".join(pieces).replace("▁", " ").strip() == "the lazy fox"


# -- bad input -------------------------------------------------------------------------------


def test_empty_corpus(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n \n")
    with pytest.raises(ValueError, match="empty corpus"):
        Vocabulary.build(TextCorpus.from_file(path))


def test_vocabulary_empty_after_min_count():
    with pytest.raises(ValueError, match="min_count=5"):
        Vocabulary.build([["a", "b", "a"]], min_count=5)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        TextCorpus.from_file("nope.txt")


def test_non_utf8_corpus_raises_or_skips(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"good line\ncaf\xe9 au lait\nanother good line\n")
    with pytest.raises(ValueError, match=r"latin1.txt: invalid UTF-8 at byte 13"):
        list(TextCorpus.from_file(path))
    corpus = TextCorpus.from_file(path, on_decode_error="skip")
    assert list(corpus) == [["good", "line"], ["another", "good", "line"]]
    assert corpus.stats.skipped_undecodable == 1


def test_corpus_without_vocabulary_words():
    with pytest.raises(ValueError, match="no in-vocabulary words"):
        encode_corpus([["x", "y"]], Vocabulary(["a"], [1]))
    assert torch.equal(Vocabulary(["a"], [1]).encode(["x"]), torch.tensor([-1]))


def test_transformers_tokenizer_from_a_local_folder(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from multicon.data.corpus import transformers_tokenizer

    vocab = {"[UNK]": 0, "hello": 1, "world": 2}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "tok")
    corpus = TextCorpus.from_texts(
        ["hello world", "hello there"], tokenizer=transformers_tokenizer(str(tmp_path / "tok"))
    )
    assert list(corpus) == [["hello", "world"], ["hello", "[UNK]"]]
