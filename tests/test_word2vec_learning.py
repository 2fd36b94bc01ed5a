"""word2vec through the shared engine learns planted structure (a corpus made here, on disk).

Twenty topics of five words each; every sentence draws its words from one topic, mixed with
frequent function words that subsampling thins out. Words of one topic share contexts, so each
word's nearest neighbours should be its topic mates: chance is 4 in 104 for a top-4 neighbour.
"""

import random

import pytest
import torch

from multicon import methods
from multicon.data.corpus import TextCorpus, encode_corpus
from multicon.eval.words import most_similar
from multicon.optim import SGD
from multicon.pairs.context import ContextPairs
from multicon.text import Vocabulary, Word2Vec
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


@pytest.mark.parametrize("kernel", ["fused", "torch"])
def test_train_word2vec_in_one_call_as_gensim(tmp_path, kernel):
    _write_corpus(tmp_path / "topics.txt")
    w2v = train_word2vec(
        tmp_path / "topics.txt", dim=16, window=3, min_count=1, sample=1e-2, epochs=3,
        batch_size=512, kernel=kernel,
    )  # fmt: skip
    assert len(w2v.vocab) == TOPICS * PER_TOPIC + 4
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision  # chance: about 0.04


def test_train_word2vec_takes_lists_and_refuses_one_shot_iterators():
    sentences = [[f"t{t}w{i % 4}" for i in range(12)] for t in range(6)] * 50
    w2v = train_word2vec(sentences, dim=8, window=3, min_count=1, sample=0, epochs=1)
    assert sorted(w2v.vocab.words) == sorted({w for s in sentences for w in s})
    with pytest.raises(TypeError, match="re-iterable"):
        train_word2vec(iter(sentences), min_count=1)
    with pytest.raises(ValueError, match="kernel must be"):
        train_word2vec(sentences, kernel="gpu")
    with pytest.raises(ValueError, match="min_count"):
        train_word2vec([["rare"]], min_count=5)
