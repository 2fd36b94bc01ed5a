"""The HogBatch skip-gram step (C, noise words shared by a window) against a float64 reference
of the same math, what it learns, and the input it refuses."""

import pytest
import torch
from test_fused_skipgram import _copy, _tables, _w2v

from multicon import native
from multicon.pairs.base import PairBatch
from multicon.steps import HogBatchSkipGram, fused_skipgram, hogbatch
from multicon.text import Word2Vec


def _reference(w2v, centre, context, noise, lr, run_max):
    """The windows' updates in float64: a window is a run of one centre (cut every `run_max`
    pairs) with its first pair's noise words (those equal to the centre skipped); all of its
    scores use the rows as the window found them. Returns (input, output, summed loss)."""
    inp, out = (t.double().clone() for t in _tables(w2v))
    loss, i, n = 0.0, 0, len(centre)
    while i < n:
        e = i + 1
        while e < n and e - i < run_max and centre[e] == centre[i]:
            e += 1
        c = int(centre[i])
        targets = [c] + [int(w) for w in noise[i] if int(w) != c]
        rows = [int(k) for k in context[i:e]]
        x, o = inp[rows], out[targets]  # copies: the rows the window met
        s = x @ o.T
        label = torch.zeros_like(s)
        label[:, 0] = 1
        p = torch.sigmoid(s)
        loss -= float(torch.log(torch.where(label == 1, p, 1 - p)).sum())
        g = lr * (label - p)
        inp.index_add_(0, torch.tensor(rows), g @ o)
        out.index_add_(0, torch.tensor(targets), g.T @ x)
        i = e
    return inp, out, loss


@pytest.mark.parametrize("dim", [8, 13, 100])  # whole 8-float chunks, a tail, both
def test_one_step_equals_a_float64_reference_of_the_shared_noise_math(dim):
    w2v = _w2v(words=12, dim=dim)
    # windows: centre 3 (context 5 twice), centre 7, centre 3 again (a new window), centre 0;
    # noise holds the centre itself (skipped) and a repeated word (both updates land)
    centre = torch.tensor([3, 3, 3, 7, 7, 3, 0, 0, 0, 0])
    context = torch.tensor([5, 1, 5, 2, 11, 4, 9, 8, 6, 3])
    noise = torch.tensor([[1, 2, 3], [9, 9, 9], [9, 9, 9], [7, 4, 4], [0, 0, 0]] + [[6, 10, 2]] * 5)
    want_in, want_out, want_loss = _reference(w2v, centre, context, noise, 0.3, run_max=64)
    loss = HogBatchSkipGram(w2v, negative=3, threads=1).sgd_step(
        PairBatch(centre, context, context), 0.3, noise=noise
    )
    got_in, got_out = _tables(w2v)
    torch.testing.assert_close(got_in.double(), want_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_out.double(), want_out, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)


def test_a_long_run_is_cut_into_windows_with_their_own_noise():
    run = hogbatch.window_pairs()
    w2v = _w2v(words=30, dim=8)
    n = run + 5
    centre = torch.full((n,), 2)
    context = torch.arange(n) % 29 + 1
    noise = torch.stack([torch.tensor([(i % 7) + 3, (i % 5) + 10]) for i in range(n)])
    want_in, want_out, want_loss = _reference(w2v, centre, context, noise, 0.1, run_max=run)
    loss = HogBatchSkipGram(w2v, negative=2, threads=1).sgd_step(
        PairBatch(centre, context, context), 0.1, noise=noise
    )
    torch.testing.assert_close(_tables(w2v)[0].double(), want_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_tables(w2v)[1].double(), want_out, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)


def test_more_noise_words_than_a_window_has_pairs():
    """A window's target rows are 1 + negative, unbounded: more than a window's pairs must not
    overrun the kernel's buffers (it wrote past a 64-entry array before)."""
    run = hogbatch.window_pairs()
    negative = run + 16
    w2v = _w2v(words=200, dim=8)
    centre, context = torch.tensor([3, 3, 3, 7]), torch.tensor([5, 1, 9, 2])
    gen = torch.Generator().manual_seed(0)
    noise = torch.randint(8, 200, (4, negative), generator=gen)
    want_in, want_out, want_loss = _reference(w2v, centre, context, noise, 0.05, run_max=run)
    loss = HogBatchSkipGram(w2v, negative=negative, threads=1).sgd_step(
        PairBatch(centre, context, context), 0.05, noise=noise
    )
    torch.testing.assert_close(_tables(w2v)[0].double(), want_in, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_tables(w2v)[1].double(), want_out, rtol=1e-5, atol=1e-6)
    assert float(loss) == pytest.approx(want_loss, rel=1e-5)


def test_threads_never_split_a_window():
    """Two threads over halves whose rows are disjoint: the same as one thread, though the
    middle of the batch falls inside a run (split there, its second half would take another
    pair's noise words)."""
    w2v = _w2v(words=40, dim=8)
    centre = torch.tensor([1, 1, 2, 2, 2, 2, 3, 3, 20, 21])
    context = torch.tensor([4, 5, 6, 7, 8, 9, 10, 11, 30, 31])
    noise = torch.tensor(
        [[12, 13]] * 2 + [[14, 15], [14, 15], [16, 17], [16, 17]] + [[18, 19]] * 2 + [[32, 33]] * 2
    )
    one, two = _copy(w2v), _copy(w2v)
    batch = PairBatch(centre, context, context)
    HogBatchSkipGram(one, negative=2, threads=1).sgd_step(batch, 0.2, noise=noise)
    HogBatchSkipGram(two, negative=2, threads=2).sgd_step(batch, 0.2, noise=noise)
    assert torch.equal(_tables(one)[0], _tables(two)[0])
    assert torch.equal(_tables(one)[1], _tables(two)[1])


def test_bad_input_is_named():
    step = HogBatchSkipGram(_w2v(words=10), negative=2, threads=1)
    ids = torch.tensor([0, 1])
    with pytest.raises(
        ValueError, match=r"key holds word ids outside the vocabulary \[0, 10\): 1\.\.10"
    ):
        step.sgd_step(PairBatch(ids, torch.tensor([1, 10]), ids), 0.1)
    with pytest.raises(ValueError, match="query holds word ids outside the vocabulary"):
        step.sgd_step(PairBatch(torch.tensor([-1, 0]), ids, ids), 0.1)
    with pytest.raises(ValueError, match="noise holds word ids outside the vocabulary"):
        step.sgd_step(PairBatch(ids, ids, ids), 0.1, noise=torch.tensor([[1, 2], [3, 99]]))
    with pytest.raises(ValueError, match="2 ids per pair"):
        step.sgd_step(PairBatch(ids, ids, ids), 0.1, noise=torch.tensor([[1, 2, 3]]))
    with pytest.raises(ValueError, match="query and key must pair up: 4 centre ids, 2 context"):
        step.sgd_step(PairBatch(torch.tensor([[0, 1], [1, 0]]), ids, ids), 0.1)
    with pytest.raises(TypeError, match="word ids"):
        step.sgd_step(PairBatch(torch.rand(2, 8), ids, ids), 0.1)
    with pytest.raises(ValueError, match="negative must be >= 1"):
        HogBatchSkipGram(_w2v(), negative=0)
    double = Word2Vec.from_vocab(_w2v().vocab, dim=4).to(torch.float64)
    with pytest.raises(ValueError, match="float32 tables"):
        HogBatchSkipGram(double)


def test_no_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path))
    native.load.cache_clear()
    fused_skipgram._library.cache_clear()
    hogbatch._hogbatch.cache_clear()
    try:
        with pytest.raises(native.NativeUnavailableError, match="'no-such-compiler-here' was not"):
            HogBatchSkipGram(_w2v())
    finally:
        native.load.cache_clear()
        fused_skipgram._library.cache_clear()
        hogbatch._hogbatch.cache_clear()


def test_recipe_trains_with_kernel_hogbatch(tmp_path):
    from test_word2vec_recipe import _small_run

    report, said = _small_run(tmp_path, "--kernel", "hogbatch")
    assert report["kernel"] == "hogbatch" and report["steps"] >= 1
    assert report["final_loss"] > 0
    assert not [m for m in said if "apply to the torch kernel" in m]


def test_bench_runs_gensim_and_each_kernel_side_by_side(monkeypatch):
    """The rounds, seeds, flags and best-of-runs arithmetic of ``--kernels`` (each side's run
    replaced by a stand-in that answers with figures made from its flags)."""
    from multicon.bench import word2vec as bench

    called = []

    def fake_run_part(side, argv):
        seed, kernel = int(argv[argv.index("--seed") + 1]), None
        if "--kernel" in argv:
            kernel = argv[argv.index("--kernel") + 1]
        called.append((side, kernel, seed))
        speed = {None: 100, "fused": 150, "hogbatch": 300}[kernel] + 10 * seed
        return {"words_per_second": speed, "analogy": 0.1, "ws353": 0.2 + seed, "simlex999": 0.3}

    monkeypatch.setattr(bench, "run_part", fake_run_part)
    args = bench.BenchArgs(kernels="fused, hogbatch", repeats=2, seed=5)
    k = bench.compare_kernels(args, ["--corpus", "x"])["kernels"]
    assert called == [
        ("gensim", None, 5), ("multicon", "fused", 5), ("multicon", "hogbatch", 5),
        ("gensim", None, 6), ("multicon", "fused", 6), ("multicon", "hogbatch", 6),
    ]  # fmt: skip
    assert [r["seed"] for r in k["runs"]["hogbatch"]] == [5, 6]
    assert all(r["load_average"] >= 0 for runs in k["runs"].values() for r in runs)
    assert k["best_words_per_second"] == {"gensim": 160, "fused": 210, "hogbatch": 360}
    assert k["best_ratio_to_gensim"] == {"fused": 1.312, "hogbatch": 2.25}
    assert k["mean_scores"]["fused"] == {"analogy": 0.1, "ws353": 5.7, "simlex999": 0.3}
