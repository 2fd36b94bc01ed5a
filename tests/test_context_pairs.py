"""Context-word pairs, sampled negatives, logQ correction and the SGNS loss."""

import pytest
import torch

from multicon.data.corpus import EncodedCorpus
from multicon.keys import BatchKeys, LogQCorrection, NoiseKeys, StepInputs, View
from multicon.losses import InfoNCE, KeySet, SigmoidLoss, contrastive_logits
from multicon.pairs import PairBatch, context
from multicon.pairs.context import ContextPairs, keep_probability


def view_of(key_ids: torch.Tensor) -> View:
    """A step whose key inputs are ids (word2vec's context words)."""
    return View(StepInputs(PairBatch(key_ids, key_ids, key_ids)), reverse=False)


def _positions_corpus(n=1000, offsets=(0, 3, 100, 101, 500, 1000)):
    # token id = position, so every pair shows where it came from
    return EncodedCorpus(torch.arange(n, dtype=torch.int32), torch.tensor(offsets), n)


def _all_pairs(pairs, batch_size, epoch=0, **kw):
    batches = list(pairs.batches(batch_size, epoch=epoch, device="cpu", **kw))
    return torch.cat([b.query for b in batches]), torch.cat([b.key for b in batches]), batches


def test_pairs_respect_reduced_window_and_sentences():
    corpus = _positions_corpus()
    pairs = ContextPairs(corpus, torch.ones(1000), window=3, sample=0, block_tokens=64)
    q, k, batches = _all_pairs(pairs, 100)
    sid = corpus.sentence_ids()
    dist = (q - k).abs()
    assert len(q) == pairs.num_pairs() and len(batches) == pairs.num_batches(100)
    assert int(dist.min()) == 1 and int(dist.max()) == 3
    assert bool((sid[q] == sid[k]).all())  # never across a sentence boundary
    # reduced window: distance d is reached with probability (w - d + 1) / w -> 3 : 2 : 1
    share = torch.bincount(dist)[1:].float() / len(dist)
    assert torch.allclose(share, torch.tensor([3, 2, 1]) / 6, atol=0.04)
    assert all(torch.equal(b.key, b.key_id) for b in batches)


def test_fresh_shuffle_each_epoch_and_reproducible():
    pairs = ContextPairs(_positions_corpus(), torch.ones(1000), window=2, sample=0, seed=3)
    q0, k0, _ = _all_pairs(pairs, 64, epoch=0)
    q0b, _, _ = _all_pairs(pairs, 64, epoch=0)
    q1, k1, _ = _all_pairs(pairs, 64, epoch=1)
    assert torch.equal(q0, q0b)
    assert not torch.equal(q0, q1)


def test_ranks_split_the_global_batch():
    pairs = ContextPairs(_positions_corpus(), torch.ones(1000), window=2, sample=0)
    whole = [b.query for b in pairs.batches(64, epoch=0, device="cpu")]
    r0 = [b.query for b in pairs.batches(32, epoch=0, device="cpu", rank=0, world_size=2)]
    r1 = [b.query for b in pairs.batches(32, epoch=0, device="cpu", rank=1, world_size=2)]
    assert len(r0) == len(r1) == len(whole)
    for w, a, b in zip(whole, r0, r1, strict=True):
        assert torch.equal(w, torch.cat([a, b]))


def test_the_c_loops_give_the_tensor_ops_words_and_pairs(monkeypatch):
    # subsampled, windows cut at sentence edges (some sentences empty), a group's centres yielded
    # in several parts
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (5000,), generator=g, dtype=torch.int32)
    ends = torch.randint(1, 5000, (300,), generator=g).unique()
    offsets = torch.cat([torch.tensor([0]), ends, ends[::7], torch.tensor([5000])]).sort().values
    corpus = EncodedCorpus(ids, offsets, 5000)
    counts = torch.bincount(ids.long(), minlength=50)

    def pairs_of(native: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if not native:
            monkeypatch.setattr(context, "_native_pairs", lambda: None)
        pairs = ContextPairs(corpus, counts, window=4, sample=1e-2, block_tokens=300, seed=1)
        pairs.centres_per_yield = 77
        return [(b.query, b.key) for b in pairs.batches(250, epoch=0, device="cpu")]

    assert context._native_pairs() is not None  # else this compares the tensor ops with themselves
    c_loop, tensor_ops = pairs_of(native=True), pairs_of(native=False)
    assert len(c_loop) == len(tensor_ops) > 10
    for (cq, ck), (tq, tk) in zip(c_loop, tensor_ops, strict=True):
        assert torch.equal(cq, tq) and torch.equal(ck, tk)


def test_subsampling_follows_word2vec_formula():
    # word 0 is 90% of the corpus; word2vec keeps it with (sqrt(f/t) + 1) t / f
    ids = torch.cat([torch.zeros(9000), torch.arange(1, 1001)]).int()
    ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))]
    counts = torch.bincount(ids.long())
    corpus = EncodedCorpus(ids, torch.tensor([0, len(ids)]), len(ids))
    pairs = ContextPairs(corpus, counts, window=1, sample=1e-3)
    keep = float(keep_probability(counts, 1e-3)[0])
    q, _, _ = _all_pairs(pairs, 4096)
    frequent_share = float((q == 0).float().mean())
    # the expected share of centre word 0 among kept words
    expected = 9000 * keep / (9000 * keep + 1000)
    assert abs(frequent_share - expected) < 0.05


def test_corpus_of_one_word_sentences_has_no_pairs():
    corpus = EncodedCorpus(torch.arange(3, dtype=torch.int32), torch.tensor([0, 1, 2, 3]), 3)
    pairs = ContextPairs(corpus, torch.ones(3), window=2, sample=0)
    with pytest.raises(ValueError, match="no context pairs"):
        pairs.num_pairs()


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        ContextPairs(_positions_corpus(), torch.ones(1000), window=0)


def test_sampled_negatives_follow_unigram_power():
    counts = torch.tensor([800.0, 100.0, 100.0, 0.0])
    neg = NoiseKeys(torch.nn.Embedding(4, 2), counts, k=5, ns_exponent=0.75)
    torch.manual_seed(0)
    draws = neg.sample((200_000,), torch.device("cpu"))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    expected = counts.pow(0.75) / counts.pow(0.75).sum()
    assert torch.allclose(freq, expected, atol=0.01)
    assert freq[3] == 0


def test_noise_equal_to_positive_is_never_scored_as_negative():
    table = torch.nn.Embedding(2, 3)
    neg = NoiseKeys(table, torch.tensor([1.0, 1.0]), k=8)
    key_ids = torch.tensor([0, 1, 0, 1])
    ks = neg(view_of(key_ids))
    logits = contrastive_logits(torch.randn(4, 3), ks, logit_scale=1.0, query_ids=key_ids)
    same = ks.key_ids == key_ids.unsqueeze(1)
    assert same.any()  # with 2 words some noise equals the positive ...
    assert torch.isinf(logits[:, 1:][same]).all()  # ... and is masked
    assert torch.isfinite(logits[:, 0]).all()


@pytest.mark.parametrize("per_query", [False, True], ids=["shared", "per-query"])
def test_own_keys_score_like_the_copied_form(per_query):
    q, own, noise = torch.randn(5, 4), torch.randn(5, 4), torch.randn(3, 4)
    ids = torch.tensor([7, 8, 9])
    own_ids = torch.arange(5)
    noise_b, ids_b = noise.expand(5, -1, -1), ids.expand(5, -1)
    compact = KeySet(
        noise_b if per_query else noise,
        ids_b if per_query else ids,
        torch.zeros(5, dtype=torch.long),
        own_keys=own,
        own_ids=own_ids,
    )
    copied = KeySet(
        torch.cat([own.unsqueeze(1), noise_b], 1),
        torch.cat([own_ids.unsqueeze(1), ids_b], 1),
        torch.zeros(5, dtype=torch.long),
    )
    qid = torch.tensor([0, 1, 2, 8, 4])  # query 3 meets its own id among the noise keys
    a = contrastive_logits(q, compact, logit_scale=1.0, query_ids=qid, normalize=False)
    b = contrastive_logits(q, copied, logit_scale=1.0, query_ids=qid, normalize=False)
    assert torch.allclose(a, b)
    assert torch.isinf(a[3, 2])


def test_negative_sampling_loss_gradient_is_word2vecs_update():
    q = torch.randn(1, 6, requires_grad=True)
    pos, noise = torch.randn(1, 6), torch.randn(2, 6)
    ks = KeySet(
        noise.unsqueeze(0),
        torch.tensor([[5, 6]]),
        torch.tensor([0]),
        own_keys=pos,
        own_ids=torch.tensor([4]),
    )
    SigmoidLoss("sum")(q, ks, torch.tensor([1])).backward()
    s_pos, s_neg = torch.sigmoid(q @ pos.T), torch.sigmoid(q @ noise.T)
    # word2vec: neu1e += (label - σ(q·k)) k; the loss gradient is its negative
    expected = -((1 - s_pos) * pos + ((0 - s_neg).T * noise).sum(0, keepdim=True))
    assert torch.allclose(q.grad, expected.detach(), atol=1e-6)


def test_logq_correction_turns_batch_frequency_into_target():
    key_freq = torch.tensor([0.7, 0.2, 0.1])
    target = torch.tensor([0.5, 0.3, 0.2])
    neg = LogQCorrection(BatchKeys(torch.nn.Embedding(3, 2)), key_freq, target)
    ks = neg(view_of(torch.tensor([0, 1, 2])))
    assert torch.allclose(ks.logit_offset, (target / key_freq).log(), atol=1e-6)
    # the importance-weighted partition under Q equals the one under P
    scores = torch.randn(3)
    under_q = (key_freq * (scores + ks.logit_offset).exp()).sum()
    under_p = (target * scores.exp()).sum()
    assert torch.allclose(under_q, under_p)
    loss = InfoNCE(normalize=False)(torch.randn(3, 2), ks, torch.tensor([0, 1, 2]))
    assert torch.isfinite(loss)
