"""`prefetch` runs an iterator ahead in a thread, and the trainer's use of it changes nothing."""

import threading

import pytest
import torch

from multicon import methods
from multicon.data.corpus import EncodedCorpus
from multicon.pairs.context import ContextPairs
from multicon.prefetch import prefetch
from multicon.text import Vocabulary, Word2Vec
from multicon.train import TrainConfig, Trainer


def _prefetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "multicon-prefetch"]


def test_items_in_order_and_all_of_them():
    assert list(prefetch(iter(range(100)), depth=3)) == list(range(100))
    assert list(prefetch(iter([]))) == []
    assert not _prefetch_threads()


def test_an_error_is_raised_at_its_item():
    def items():
        yield 0
        yield 1
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [0, 1]
    assert not _prefetch_threads()


def test_closing_stops_the_thread():
    def forever():
        i = 0
        while True:
            yield i
            i += 1

    it = prefetch(forever(), depth=2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    assert _prefetch_threads()
    it.close()
    assert not _prefetch_threads()


def test_bad_depth():
    with pytest.raises(ValueError, match="depth"):
        next(prefetch(iter([1]), depth=0))


def _tables(tmp_path, prefetched: bool, monkeypatch) -> list[torch.Tensor]:
    """word2vec (the engine's torch step, whose noise words come from torch's global generator)
    trained on `ContextPairs`, made ahead in a thread or not."""
    monkeypatch.setattr(ContextPairs, "prefetch", prefetched)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 30, (3000,), generator=g, dtype=torch.int32)
    corpus = EncodedCorpus(ids, torch.arange(0, 3001, 15), raw_words=3000)
    counts = torch.bincount(ids.long(), minlength=30)
    vocab = Vocabulary([f"w{i}" for i in range(30)], counts.tolist())
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=8)
    pairs = ContextPairs(corpus, counts, window=3, sample=1e-2, block_tokens=256, seed=1)
    config = TrainConfig(
        output_dir=str(tmp_path / ("on" if prefetched else "off")),
        batch_size=512,
        epochs=2,
        optimizer="sgd",
        lr=0.05,
        momentum=0.0,
        weight_decay=0.0,
        log_with="",
        progress_bar=False,
        eval_every=0,
    )
    Trainer(methods.sgns(w2v, 5), pairs, config).fit()
    return [p.detach().clone() for p in w2v.parameters()]


def test_trainer_with_prefetched_pairs_trains_the_same(tmp_path, monkeypatch):
    on = _tables(tmp_path, True, monkeypatch)
    off = _tables(tmp_path, False, monkeypatch)
    assert all(torch.equal(a, b) for a, b in zip(on, off, strict=True))
    assert not _prefetch_threads()
