"""The fused skip-gram step (C, per-pair updates) against the shared engine, and what it learns."""

import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from test_word2vec_learning import _topic_precision, _train

from multicon import methods, native
from multicon.optim import SGD
from multicon.pairs.base import PairBatch
from multicon.pairs.context import ContextPairs
from multicon.steps import FusedSkipGram, HogBatchSkipGram, fused_skipgram
from multicon.text import Vocabulary, Word2Vec
from multicon.train import TrainConfig, Trainer


def _w2v(words=40, dim=8, seed=0):
    torch.manual_seed(seed)
    vocab = Vocabulary([f"w{i}" for i in range(words)], list(range(words + 10, 10, -1)))
    w2v = Word2Vec.from_vocab(vocab, dim=dim)
    with torch.no_grad():  # a trained-looking output table, so every score is non-zero
        w2v.output_embeddings.weight.normal_(0, 0.5)
        w2v.input_embeddings.weight.normal_(0, 0.5)
    return w2v


def _copy(w2v):
    again = Word2Vec.from_vocab(w2v.vocab, dim=w2v.vectors.shape[1])
    again.load_state_dict(w2v.state_dict())
    return again


def _tables(w2v):
    return w2v.input_embeddings.weight.detach(), w2v.output_embeddings.weight.detach()


def test_one_step_equals_the_shared_engines_summed_sgd_step():
    """Pairs that share no row: applying them one by one is the batch's summed-loss SGD step.
    The third pair's noise holds its own context word, which both skip."""
    w2v = _w2v()
    batch = PairBatch(
        torch.tensor([0, 1, 2]), torch.tensor([10, 11, 12]), torch.tensor([10, 11, 12])
    )
    noise = torch.tensor([[20, 21], [22, 23], [12, 25]])

    engine_w2v = _copy(w2v)
    engine = methods.sgns(engine_w2v, negative=2)
    engine.directions[0].keys.sample = lambda shape, device: noise.view(shape)  # same noise
    out = engine(batch)
    out.loss.backward()
    SGD(engine.parameters(), lr=0.1, momentum=0.0).step()

    loss = FusedSkipGram(w2v, negative=2, threads=1).sgd_step(batch, 0.1, noise=noise)

    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)
    for fused, reference in zip(_tables(w2v), _tables(engine_w2v), strict=True):
        assert torch.allclose(fused, reference, atol=1e-6)
    moved = (_tables(w2v)[0] != _tables(_w2v())[0]).any(1).nonzero().flatten().tolist()
    assert moved == [0, 1, 2]  # only the centre words' input rows


def test_pairs_are_applied_in_order():
    """word2vec's semantics: a pair sees the rows the pairs before it updated."""
    w2v, stepwise = _w2v(), _w2v()
    pair = torch.tensor([3]), torch.tensor([7])
    noise = torch.tensor([[5, 9]])
    step = FusedSkipGram(w2v, negative=2, threads=1)
    twice = PairBatch(pair[0].repeat(2), pair[1].repeat(2), pair[1].repeat(2))
    both = step.sgd_step(twice, 0.5, noise=noise.repeat(2, 1))
    one = FusedSkipGram(stepwise, negative=2, threads=1)
    first = one.sgd_step(PairBatch(*pair, pair[1]), 0.5, noise=noise)
    second = one.sgd_step(PairBatch(*pair, pair[1]), 0.5, noise=noise)
    assert both.item() == pytest.approx(first.item() + second.item(), rel=1e-5)
    assert second < first  # the second pass met the improved rows
    for a, b in zip(_tables(w2v), _tables(stepwise), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_noise_follows_unigram_to_the_three_quarters():
    counts = [400, 100, 25, 1, 0]
    vocab = Vocabulary([f"w{i}" for i in range(5)], counts)
    step = FusedSkipGram(Word2Vec.from_vocab(vocab, dim=4), ns_exponent=0.75)
    draws = step.sample_noise(400_000, seed=3)
    freq = torch.bincount(draws, minlength=5).double() / len(draws)
    expected = torch.tensor(counts, dtype=torch.float64).pow(0.75)
    expected /= expected.sum()
    assert torch.allclose(freq, expected, atol=3e-3), (freq, expected)
    assert freq[4] == 0  # a word never seen is never noise
    assert not torch.equal(draws[:100], step.sample_noise(100, seed=4))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kernel", [FusedSkipGram, HogBatchSkipGram], ids=["per-pair", "hogbatch"])
def test_c_kernel_training_learns_topic_neighbours(topic_corpus, tmp_path, kernel, threads):
    vocab, encoded = topic_corpus
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=16)
    pairs = ContextPairs(encoded, vocab.counts, window=3, sample=1e-2, seed=0)
    step = kernel(w2v, negative=5, threads=threads)
    result = _train(
        w2v, pairs, tmp_path, step=step, epochs=3, batch_size=512, optimizer="sgd", lr=0.025
    )
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    precision = _topic_precision(w2v)
    assert precision > 0.9, precision  # chance: about 0.04


def test_fused_training_resumes_exactly(topic_corpus, tmp_path):
    """One thread: the noise seeds come from torch's generator, which checkpoints keep."""
    vocab, encoded = topic_corpus

    def run(folder, epochs, resume=""):
        torch.manual_seed(0)
        w2v = Word2Vec.from_vocab(vocab, dim=8)
        pairs = ContextPairs(encoded, vocab.counts, window=3, sample=1e-2, seed=0)
        config = TrainConfig(
            output_dir=str(folder), epochs=epochs, batch_size=512, optimizer="sgd", lr=0.025,
            momentum=0.0, weight_decay=0.0, schedule="constant", log_with="",
            progress_bar=False, eval_every=0, resume=resume,
        )  # fmt: skip
        Trainer(w2v, pairs, config, step=FusedSkipGram(w2v, threads=1)).fit()
        return w2v.vectors

    straight = run(tmp_path / "a", 2)
    run(tmp_path / "b", 1)
    resumed = run(tmp_path / "b", 2, resume="latest")
    assert torch.equal(straight, resumed)


def test_bad_input_is_named():
    step = FusedSkipGram(_w2v(words=10), negative=2, threads=1)
    ids = torch.tensor([0, 1])
    with pytest.raises(
        ValueError, match=r"key holds word ids outside the vocabulary \[0, 10\): 1\.\.10"
    ):
        step.sgd_step(PairBatch(ids, torch.tensor([1, 10]), ids), 0.1)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        step.sgd_step(PairBatch(torch.tensor([-1, 0]), ids, ids), 0.1)
    with pytest.raises(TypeError, match="word ids"):
        step.sgd_step(PairBatch(torch.rand(2, 8), ids, ids), 0.1)
    with pytest.raises(ValueError, match="2 ids per pair"):
        step.sgd_step(PairBatch(ids, ids, ids), 0.1, noise=torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="negative must be >= 1"):
        FusedSkipGram(_w2v(), negative=0)
    half = Word2Vec.from_vocab(_w2v().vocab, dim=4).to(torch.float64)
    with pytest.raises(ValueError, match="float32 tables on the CPU or a CUDA device; got torch.f"):
        FusedSkipGram(half)
    silent = Vocabulary(["a", "b"], [0, 0])
    with pytest.raises(ValueError, match="noise distribution is empty"):
        FusedSkipGram(Word2Vec.from_vocab(silent, dim=4))


@pytest.mark.parametrize(
    "setting",
    [
        {"optimizer": "adamw"},
        {"momentum": 0.9},
        {"weight_decay": 1e-4},
        {"grad_clip": 1.0},
        {"mixed_precision": "bf16"},
    ],
    ids=lambda s: next(iter(s)),
)
def test_trainer_refuses_settings_a_fused_step_would_ignore(topic_corpus, tmp_path, setting):
    vocab, encoded = topic_corpus
    pairs = ContextPairs(encoded, vocab.counts, window=3, seed=0)
    base = dict(optimizer="sgd", momentum=0.0, weight_decay=0.0)
    config = TrainConfig(output_dir=str(tmp_path), log_with="", **{**base, **setting})
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"cannot honour {name}="):
        w2v = Word2Vec.from_vocab(vocab, dim=4)
        Trainer(w2v, pairs, config, step=FusedSkipGram(w2v))


def test_no_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path))
    native.load.cache_clear()
    try:
        with pytest.raises(native.NativeUnavailableError, match="'no-such-compiler-here' was not"):
            native.load("sgns")
        assert not native.available()
    finally:
        native.load.cache_clear()


def test_kernels_compile_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path))
    native.load.cache_clear()
    try:
        native.load("sgns")
        built = list(tmp_path.glob("sgns-*.so"))
        assert len(built) == 1 and not list(tmp_path.glob("tmp*"))  # no temporary left over
        stamp = built[0].stat().st_mtime_ns
        native.load.cache_clear()
        native.load("sgns")
        assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    finally:
        native.load.cache_clear()


@pytest.mark.parametrize(("device", "processes"), [("mps", 1), ("cpu", 2)])
def test_trainer_runs_a_fused_model_on_the_cpu_only(topic_corpus, tmp_path, device, processes):
    """On a device it has no kernel for, or in DDP without hogwild, a fused step cannot run: a
    named error, not a crash."""
    vocab, encoded = topic_corpus
    pairs = ContextPairs(encoded, vocab.counts, window=3, seed=0)
    config = TrainConfig(
        output_dir=str(tmp_path), optimizer="sgd", momentum=0.0, weight_decay=0.0, log_with=""
    )
    accelerator = SimpleNamespace(
        device=torch.device(device), num_processes=processes, process_index=0
    )
    w2v = Word2Vec.from_vocab(vocab, dim=4)
    with pytest.raises(ValueError, match=f"runs on cpu or cuda.*{device}, {processes} processes"):
        Trainer(w2v, pairs, config, step=FusedSkipGram(w2v), accelerator=accelerator)


def test_a_fused_step_trains_the_model_it_was_built_with(topic_corpus, tmp_path):
    vocab, encoded = topic_corpus
    pairs = ContextPairs(encoded, vocab.counts, window=3, seed=0)
    config = TrainConfig(
        output_dir=str(tmp_path), optimizer="sgd", momentum=0.0, weight_decay=0.0, log_with=""
    )
    step = FusedSkipGram(Word2Vec.from_vocab(vocab, dim=4))
    with pytest.raises(ValueError, match="model: train the Word2Vec this FusedSkipGram"):
        Trainer(Word2Vec.from_vocab(vocab, dim=4), pairs, config, step=step)


def test_a_compiler_without_openmp_gives_a_one_thread_kernel(tmp_path, monkeypatch):
    """A compiler that rejects -fopenmp (Apple's clang): a warning, and a kernel that works."""
    fake = tmp_path / "cc-without-openmp"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = -fopenmp ] && exit 1; done\nexec cc "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path / "cache"))
    native.load.cache_clear()
    fused_skipgram._library.cache_clear()
    try:
        with pytest.warns(UserWarning, match="has no OpenMP"):
            lib = native.load("sgns")
        assert lib.mc_openmp() == 0
        w2v, reference = _w2v(), _w2v()
        batch = PairBatch(torch.tensor([0, 1]), torch.tensor([10, 11]), torch.tensor([10, 11]))
        noise = torch.tensor([[20, 21], [22, 23]])
        FusedSkipGram(w2v, negative=2, threads=2).sgd_step(batch, 0.1, noise=noise)
        fused_skipgram._library.cache_clear()
        native.load.cache_clear()
        monkeypatch.delenv("CC")
        monkeypatch.delenv("MULTICON_CACHE")
        FusedSkipGram(reference, negative=2, threads=1).sgd_step(batch, 0.1, noise=noise)
        for a, b in zip(_tables(w2v), _tables(reference), strict=True):
            assert torch.allclose(a, b, atol=1e-6)
    finally:
        native.load.cache_clear()
        fused_skipgram._library.cache_clear()


_TRITON_SCRIPT = """
import json
import torch
from multicon.pairs.base import PairBatch
from multicon.steps import FusedSkipGram
from multicon.text import Vocabulary, Word2Vec
from multicon.text.sgns_triton import sample_noise_triton

def tables(seed=0):
    torch.manual_seed(seed)
    vocab = Vocabulary([f"w{i}" for i in range(40)], list(range(50, 10, -1)))
    w2v = Word2Vec.from_vocab(vocab, dim=8)
    with torch.no_grad():
        w2v.output_embeddings.weight.normal_(0, 0.5)
        w2v.input_embeddings.weight.normal_(0, 0.5)
    return w2v

c_side, triton_side = tables(), tables()
g = torch.Generator().manual_seed(1)
centre, context = torch.randint(0, 40, (2, 50), generator=g)  # repeats: order matters
noise = torch.randint(0, 40, (50, 3), generator=g)
batch = PairBatch(centre, context, context)
c_loss = FusedSkipGram(c_side, negative=3, threads=1).sgd_step(batch, 0.1, noise=noise)
fused = FusedSkipGram(triton_side, negative=3, pairs_per_program=8)
t_loss = fused._gpu_step(batch, 0.1, noise)
same = all(
    torch.allclose(a, b, atol=1e-5)
    for a, b in zip(c_side.state_dict().values(), triton_side.state_dict().values())
)
draws = sample_noise_triton(fused._prob, fused._alias, 200_000, seed=3)
freq = (torch.bincount(draws, minlength=40).double() / len(draws)).tolist()
expected = torch.arange(50, 10, -1, dtype=torch.float64).pow(0.75)
drawn = fused._gpu_step(batch, 0.1, None)
ids = torch.tensor([1, 2])
bad = fused._gpu_step(PairBatch(torch.tensor([0, 40]), ids, ids), 0.1, None)
print(json.dumps(dict(
    c_loss=c_loss.item(), t_loss=t_loss.item(), same=same, freq=freq,
    expected=(expected / expected.sum()).tolist(), drawn=drawn.item(), bad=str(bad.item()),
)))
"""


def test_the_triton_kernel_is_the_c_kernel(tmp_path):
    """The GPU path, run on the CPU by Triton's interpreter (programs one after another, so in
    order): the same tables and loss as the C loop, noise drawn as unigram^0.75, and an id
    outside the vocabulary turned into a NaN loss rather than a stray write."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout.strip().splitlines()[-1])
    assert r["same"] and r["t_loss"] == pytest.approx(r["c_loss"], rel=1e-5)
    assert torch.allclose(torch.tensor(r["freq"]), torch.tensor(r["expected"]).float(), atol=3e-3)
    assert math.isfinite(r["drawn"]) and r["drawn"] > 0
    assert r["bad"] == "nan"
