"""word2vec through the shared engine learns planted structure (a corpus made here, on disk).

Twenty topics of five words each; every sentence draws its words from one topic, mixed with
frequent function words that subsampling thins out. Words of one topic share contexts, so each
word's nearest neighbours should be its topic mates: chance is 4 in 104 for a top-4 neighbour.
"""

import json
import random

import pytest
import torch

from multicon import methods
from multicon.data import token_cache
from multicon.data.corpus import TextCorpus, encode_corpus
from multicon.data.token_cache import MappedArray
from multicon.eval.words import most_similar
from multicon.optim import SGD
from multicon.pairs.context import ContextPairs
from multicon.text import Vocabulary, Word2Vec, training
from multicon.text.training import train_word2vec
from multicon.train import NonFiniteLossError, TrainConfig, Trainer

TOPICS, PER_TOPIC = 20, 5


def _write_corpus(
    path, sentences=1000, length=12, seed=0, function_words=("the", "of", "and", "a"), rate=0.3
):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(sentences):
            t = rng.randrange(TOPICS)
            words = [
                rng.choice(function_words)
                if rng.random() < rate
                else f"topic{t}word{rng.randrange(PER_TOPIC)}"
                for _ in range(length)
            ]
            f.write(" ".join(words).capitalize() + ".\n")


def _topic_precision(model: Word2Vec, topn=PER_TOPIC - 1) -> float:
    hits = total = 0
    for t in range(TOPICS):
        for i in range(PER_TOPIC):
            word = f"topic{t}word{i}"
            neighbours = [w for w, _ in most_similar(model.vectors, model.vocab, word, topn=topn)]
            hits += sum(w.startswith(f"topic{t}word") for w in neighbours)
            total += topn
    return hits / total


def _train(model, pairs, tmp_path, optimizer_fn=None, step=None, **config):
    cfg = TrainConfig(
        output_dir=str(tmp_path),
        log_with="",
        progress_bar=False,
        eval_every=0,
        schedule="linear",
        weight_decay=0.0,
        momentum=0.0,
        **config,
    )
    return Trainer(model, pairs, cfg, step=step, optimizer=optimizer_fn).fit()


@pytest.mark.parametrize(
    ("shared_negatives", "noise_group"),
    [(0, None), (32, None), (4, 64)],
    ids=["per-pair", "shared", "grouped"],
)
def test_sgns_learns_topic_neighbours(topic_corpus, tmp_path, shared_negatives, noise_group):
    vocab, encoded = topic_corpus
    assert len(vocab) == TOPICS * PER_TOPIC + 4
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=16)
    pairs = ContextPairs(encoded, vocab.counts, window=3, sample=1e-2, seed=0)
    model = methods.sgns(w2v, 5, shared_negatives=shared_negatives, noise_group=noise_group)
    result = _train(
        model,
        pairs,
        tmp_path,
        epochs=3,
        batch_size=512,
        optimizer="sgd",
        lr=0.025,
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision  # chance: about 0.04


def test_infonce_with_logq_corrected_in_batch_negatives_learns_the_same(topic_corpus, tmp_path):
    vocab, encoded = topic_corpus
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=16, sparse=False)
    pairs = ContextPairs(encoded, vocab.counts, window=3, sample=1e-2, seed=0)
    model = methods.word2vec_infonce(w2v, 0.1, key_freq=pairs.key_frequencies())
    _train(model, pairs, tmp_path, epochs=3, batch_size=512, optimizer="adamw", lr=0.02)
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision


def test_the_word2vec_page_runs_and_learns():
    from test_custom_generator import ROOT, load_tool

    ns = load_tool("run_doc").run(ROOT / "docs" / "word2vec.md")
    assert {w for w, _ in ns["neighbours"]} == {f"t3w{i}" for i in range(1, 5)}
    assert {w for w, _ in ns["fast_neighbours"]} == {f"t3w{i}" for i in range(1, 5)}
    assert {w for w, _ in ns["quick_neighbours"]} == {f"t3w{i}" for i in range(1, 5)}
    w2v = ns["w2v"]
    assert w2v.similarity("t3w0", "t3w1") > w2v.similarity("t3w0", "t4w0") + 0.3


@pytest.mark.parametrize("row_clip", [0.0, 1.0], ids=["plain", "row-clip"])
def test_row_clip_keeps_a_large_batch_from_diverging(tmp_path, row_clip):
    """One function word in 40% of the tokens, no subsampling, batches of 8,192 pairs: each
    step sums thousands of its gradients at one point, where word2vec would take them one at
    a time. Plain SGD blows up; with each row's step capped, the topics are learned."""
    _write_corpus(tmp_path / "c.txt", sentences=1500, function_words=("the",), rate=0.4)
    text = TextCorpus.from_file(tmp_path / "c.txt")
    vocab = Vocabulary.build(text, min_count=1)
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=16)
    pairs = ContextPairs(encode_corpus(text, vocab), vocab.counts, window=3, sample=0, seed=0)
    model = methods.sgns(w2v, 5, shared_negatives=16, noise_group=256)

    def optimizer(m):  # row clipping is an option of multicon's SGD, not of the trainer
        return SGD(m.parameters(), lr=0.025, momentum=0.0, row_clip=row_clip)

    config = dict(epochs=5, batch_size=8192, optimizer="sgd", lr=0.025, optimizer_fn=optimizer)
    if not row_clip:
        with pytest.raises(NonFiniteLossError):
            _train(model, pairs, tmp_path / "run", **config)
        return
    _train(model, pairs, tmp_path / "run", **config)
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision  # chance: about 0.04


@pytest.mark.parametrize("kernel", ["fused", "hogbatch", "torch"])
def test_train_word2vec_in_one_call_as_gensim(tmp_path, kernel):
    _write_corpus(tmp_path / "topics.txt")
    w2v = train_word2vec(
        tmp_path / "topics.txt", dim=16, window=3, min_count=1, sample=1e-2, epochs=3,
        batch_size=512, kernel=kernel,
    )  # fmt: skip
    assert len(w2v.vocab) == TOPICS * PER_TOPIC + 4
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision  # chance: about 0.04


class _RecordedPairs(ContextPairs):
    """ContextPairs that remember the corpus they were given, and themselves."""

    corpora: list = []
    made: list = []

    def __init__(self, corpus, *args, **kwargs):
        type(self).corpora.append(corpus)
        super().__init__(corpus, *args, **kwargs)
        type(self).made.append(self)


def test_train_word2vec_reads_its_corpus_once_into_memory_mapped_ids(monkeypatch):
    monkeypatch.setattr(training, "ContextPairs", _RecordedPairs)
    _RecordedPairs.corpora, _RecordedPairs.made = [], []
    sentences = [[f"t{t}w{i % 4}" for i in range(12)] for t in range(6)] * 50
    w2v = train_word2vec(sentences, dim=8, window=3, min_count=1, sample=0, epochs=1)
    assert sorted(w2v.vocab.words) == sorted({w for s in sentences for w in s})
    once = train_word2vec(iter(sentences), dim=8, window=3, min_count=1, sample=0, epochs=1)
    assert once.vocab.words == w2v.vocab.words  # a one-shot iterator: read once, not twice
    for corpus in _RecordedPairs.corpora:  # the pairs read ids from disk, never a tensor of all
        assert isinstance(corpus.ids, MappedArray) and isinstance(corpus.offsets, MappedArray)
        assert corpus.raw_words == 12 * 6 * 50
    with pytest.raises(ValueError, match="kernel must be"):
        train_word2vec(sentences, kernel="gpu")
    with pytest.raises(ValueError, match="shuffle_blocks must be >= 1, got 0"):
        train_word2vec(sentences, shuffle_blocks=0)
    train_word2vec(sentences, dim=8, min_count=1, epochs=1, shuffle_blocks=3)
    assert [pairs.shuffle_blocks for pairs in _RecordedPairs.made] == [16, 16, 3]
    with pytest.raises(ValueError, match="min_count"):
        train_word2vec([["rare"]], min_count=5)


def test_train_word2vec_keeps_and_reuses_a_token_cache(tmp_path, monkeypatch):
    _write_corpus(tmp_path / "topics.txt", sentences=200)
    cache = tmp_path / "cache"
    first = train_word2vec(tmp_path / "topics.txt", dim=8, min_count=1, epochs=1, token_cache=cache)
    assert (cache / "meta.json").is_file() and (cache / "ids.int32").stat().st_size == 200 * 12 * 4

    def unread(self):
        raise AssertionError("the corpus was read again")

    monkeypatch.setattr(TextCorpus, "__iter__", unread)
    again = train_word2vec(tmp_path / "topics.txt", dim=8, min_count=1, epochs=1, token_cache=cache)
    assert again.vocab.words == first.vocab.words
    with pytest.raises(ValueError, match="meta.json: .*another corpus.*vocabulary: cache has"):
        train_word2vec(tmp_path / "topics.txt", min_count=2, token_cache=cache)
    sentences = [["a", "b", "c"]] * 20
    train_word2vec(sentences, dim=8, min_count=1, sample=0, epochs=1, token_cache=tmp_path / "list")
    with pytest.raises(ValueError, match="meta.json: .*another corpus.*corpus: cache has"):
        train_word2vec([["a", "b", "d"]] * 20, min_count=1, token_cache=tmp_path / "list")
    with pytest.raises(ValueError, match="generator corpus has no identity.*corpus_name"):
        train_word2vec((s for s in sentences), min_count=1, token_cache=tmp_path / "gen")


def test_train_word2vec_streams_a_datasets_corpus_into_the_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    _write_corpus(tmp_path / "topics.txt", sentences=300)
    lines = (tmp_path / "topics.txt").read_text().splitlines()
    json_path = tmp_path / "topics.jsonl"
    json_path.write_text("".join(json.dumps({"body": line}) + "\n" for line in lines))
    stream = datasets.load_dataset("json", data_files=str(json_path), split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    monkeypatch.setattr(token_cache, "_BLOCK", 64)  # ids reach the disk every 64 tokens
    seen = []

    def rows():  # checks, as it streams, that what came before is already on disk
        for i, row in enumerate(stream):
            if i == 200:
                (written,) = tmp_path.glob("cache/.stream.tmp-*/all.int32")
                seen.append(written.stat().st_size)
            yield row

    streamed = datasets.IterableDataset.from_generator(rows)
    assert streamed.column_names is None  # known only from its rows
    with pytest.raises(ValueError, match=r"no column 'text'; its rows have \['body'\]"):
        train_word2vec(streamed)
    with pytest.raises(ValueError, match="streaming dataset has no content fingerprint"):
        train_word2vec(streamed, text_column="body", token_cache=tmp_path / "cache" / "stream")
    w2v = train_word2vec(
        streamed, text_column="body", dim=8, min_count=1, epochs=1,
        token_cache=tmp_path / "cache" / "stream", corpus_name="local/topics",
    )  # fmt: skip
    assert seen and seen[0] >= 4 * (200 * 12 - 64)  # 200 rows of 12 words, less one block
    want = Vocabulary.build(TextCorpus.from_file(tmp_path / "topics.txt"), min_count=1)
    assert w2v.vocab.words == want.words and w2v.vocab.counts.tolist() == want.counts.tolist()
    meta = json.loads((tmp_path / "cache" / "stream" / "meta.json").read_text())
    assert meta["key"]["corpus"]["name"] == "local/topics" and meta["tokens"] == 300 * 12
