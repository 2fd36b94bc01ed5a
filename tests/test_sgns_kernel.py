"""The hand-written SGNS backward, grouped noise keys and the sparse SGD step, each against the
plain autograd / torch form of the same computation."""

import pytest
import torch

from multicon import KeySet, PairBatch
from multicon.keys import NoiseKeys, StepInputs, View
from multicon.losses import SigmoidLoss, contrastive_logits, softplus
from multicon.losses.sigmoid_kernel import sgns_own_keys_loss
from multicon.optim import SGD


def noise_keys(source: NoiseKeys, key_ids: torch.Tensor):
    """``source``'s key set for a batch whose key inputs are ``key_ids``."""
    batch = PairBatch(torch.zeros_like(key_ids), key_ids, key_ids)
    return source(View(StepInputs(batch), reverse=False))


def autograd_sgns(q, own, keys, key_ids, query_ids, scale, weight):
    """The SGNS loss built from the generic logits (the path every other KeySet takes)."""
    ks = KeySet(
        keys,
        key_ids,
        torch.zeros(len(q), dtype=torch.long),
        own_keys=own,
        own_ids=torch.full((len(q),), -1),
    )
    logits = contrastive_logits(q, ks, logit_scale=scale, query_ids=query_ids, normalize=False)
    return softplus(-logits[:, 0]).sum() + weight * softplus(logits[:, 1:]).sum()


@pytest.mark.parametrize("layout", ["shared", "grouped", "per-query"])
@pytest.mark.parametrize("masked", [True, False])
@pytest.mark.parametrize("joint", [False, True])
def test_fused_loss_and_gradients_match_autograd(layout, masked, joint):
    g = torch.Generator().manual_seed(0)
    b, d, k = 12, 5, 4
    groups = {"shared": None, "grouped": 3, "per-query": b}[layout]
    q = torch.randn(b, d, dtype=torch.float64, generator=g, requires_grad=True)
    shape = (k, d) if groups is None else (groups, k, d)
    n_keys = torch.Size(shape).numel() // d
    # joint: the own and noise keys are views of one tensor (one lookup), its gradient one
    rows = torch.randn(b + n_keys, d, dtype=torch.float64, generator=g, requires_grad=True)
    own, keys = rows[:b], rows[b:].view(shape)
    if not joint:
        own, keys = own.detach().requires_grad_(), keys.detach().requires_grad_()
    key_ids = torch.randint(0, 4, shape[:-1], generator=g)
    query_ids = torch.randint(0, 4, (b,), generator=g) if masked else None
    if masked:  # the mask must matter in this draw
        assert (
            contrastive_logits(
                q,
                KeySet(
                    keys,
                    key_ids,
                    torch.zeros(b, dtype=torch.long),
                    own_keys=own,
                    own_ids=torch.full((b,), -1),
                ),
                logit_scale=1.0,
                query_ids=query_ids,
                normalize=False,
            ).isinf()
        ).any()
    fused = sgns_own_keys_loss(
        q,
        own,
        keys,
        key_ids,
        query_ids,
        scale=1.7,
        negative_weight=0.6,
        joint=rows if joint else None,
    )
    ref = autograd_sgns(q, own, keys, key_ids, query_ids, 1.7, 0.6)
    assert abs(fused.item() - ref.item()) < 1e-10
    wrt = (q, rows) if joint else (q, own, keys)
    for a, r in zip(torch.autograd.grad(fused, wrt), torch.autograd.grad(ref, wrt), strict=True):
        assert torch.allclose(a, r, atol=1e-10)


def test_joint_rows_must_hold_the_own_and_noise_keys():
    rows = torch.randn(10, 3)
    with pytest.raises(ValueError, match="joint must hold own_keys in its first rows"):
        sgns_own_keys_loss(
            torch.randn(4, 3),
            rows[:4],
            torch.randn(2, 3, 3),
            torch.zeros(2, 3, dtype=torch.long),
            None,
            joint=rows,
        )


def test_word2vec_one_lookup_gives_the_two_lookup_loss_and_gradients():
    """The default model embeds each context word with its noise in one lookup of the output
    table; with the same noise draws it gives the loss and table gradients of two lookups."""
    from multicon import methods
    from multicon.model import ContrastiveModel, Direction
    from multicon.text import Vocabulary, Word2Vec

    vocab = Vocabulary([f"w{i}" for i in range(30)], list(range(60, 0, -2)))
    batch = PairBatch(torch.randint(0, 30, (10,)), (k := torch.randint(0, 30, (10,))), k)
    results = []
    for joint in (True, False):
        torch.manual_seed(0)
        w2v = Word2Vec.from_vocab(vocab, dim=6)
        torch.nn.init.normal_(w2v.output_embeddings.weight)  # word2vec starts it at zero
        model = methods.sgns(w2v, shared_negatives=4, noise_group=5)
        noise = model.directions[0].keys
        assert noise.joint_lookup
        if not joint:
            noise.joint_lookup = False
            model = ContrastiveModel([Direction(w2v.input_embeddings, noise)], model.loss)
        torch.manual_seed(1)
        loss = model(batch).loss
        loss.backward()
        grads = [t.weight.grad.to_dense() for t in (w2v.input_embeddings, w2v.output_embeddings)]
        results.append((loss.detach(), *grads))
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert results[0][2].abs().sum() > 0


def test_joint_lookup_needs_id_key_inputs():
    neg = NoiseKeys(torch.nn.Embedding(10, 4), torch.ones(10), k=3)
    batch = PairBatch(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([1, 7]))
    with pytest.raises(ValueError, match="joint_lookup needs key inputs"):
        neg(View(StepInputs(batch), reverse=False))


def test_noise_keys_cannot_be_scored_both_ways_or_chained():
    from multicon.keys import BatchKeys, Chain
    from multicon.model import ContrastiveModel, Direction

    table = torch.nn.Embedding(10, 4)
    neg = NoiseKeys(table, torch.ones(10), k=3)
    with pytest.raises(TypeError, match="keys of its own"):
        Chain(BatchKeys(table), neg)
    with pytest.raises(TypeError, match="keys of its own"):
        Chain(neg, BatchKeys(table))
    # a sigmoid loss over anything but noise keys is refused when the model is built
    with pytest.raises(ValueError, match="sigmoid loss over BatchKeys"):
        ContrastiveModel([Direction(table, BatchKeys(table))], SigmoidLoss("sum"))


def test_negative_sampling_loss_takes_the_fused_path_only_for_its_layout():
    q, own, noise = torch.randn(4, 3), torch.randn(4, 3), torch.randn(2, 2, 3)
    ids = torch.tensor([0, 1, 2, 3])
    ks = KeySet(
        noise,
        torch.tensor([[5, 1], [6, 7]]),
        torch.zeros(4, dtype=torch.long),
        own_keys=own,
        own_ids=ids,
    )
    loss = SigmoidLoss("mean", negative_weight=2.0)
    expected = autograd_sgns(q, own, noise, ks.key_ids, ids, 1.0, 2.0) / 4
    assert torch.allclose(loss(q, ks, ids), expected, atol=1e-6)
    # with a logit offset the generic path runs, and gives the same numbers at offset 0
    ks.logit_offset = torch.zeros(2, 2)
    assert torch.allclose(loss(q, ks, ids), expected, atol=1e-6)


def test_grouped_keys_score_like_keys_spelled_out_per_query():
    q, keys = torch.randn(6, 4), torch.randn(2, 3, 4)
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    grouped = KeySet(keys, ids, torch.zeros(6, dtype=torch.long))
    spelled = KeySet(
        keys.repeat_interleave(3, 0), ids.repeat_interleave(3, 0), torch.zeros(6, dtype=torch.long)
    )
    qid = torch.tensor([9, 2, 9, 9, 9, 6])
    a = contrastive_logits(q, grouped, logit_scale=2.0, query_ids=qid, normalize=True)
    b = contrastive_logits(q, spelled, logit_scale=2.0, query_ids=qid, normalize=True)
    assert torch.allclose(a, b)
    assert torch.isinf(a[1, 1]) and torch.isinf(a[5, 2]) and torch.isinf(a).sum() == 2


def test_groups_that_do_not_divide_the_batch_are_rejected():
    with pytest.raises(ValueError, match="does not divide 5 queries"):
        contrastive_logits(
            torch.randn(5, 4),
            KeySet(
                torch.randn(2, 3, 4),
                torch.zeros(2, 3, dtype=torch.long),
                torch.zeros(5, dtype=torch.long),
            ),
            logit_scale=1.0,
        )


@pytest.mark.parametrize("batch", [8, 7])
def test_sampled_negatives_share_a_draw_per_group(batch):
    table = torch.nn.Embedding(50, 3)
    neg = NoiseKeys(table, torch.ones(50), k=5, group_size=4)
    ks = noise_keys(neg, torch.arange(batch))
    if batch % 4 == 0:  # two groups of four: one draw each
        assert ks.keys.shape == (2, 5, 3)
        assert torch.equal(ks.keys, table(ks.key_ids))
    else:  # 7 queries in groups of 4 and 3, spelled out per query
        assert ks.keys.shape == (7, 5, 3)
        assert torch.equal(ks.key_ids[0], ks.key_ids[3])
        assert torch.equal(ks.key_ids[4], ks.key_ids[6])
        assert not torch.equal(ks.key_ids[3], ks.key_ids[4])
    with pytest.raises(ValueError, match="group_size"):
        NoiseKeys(table, torch.ones(50), group_size=0)


def test_sgd_sparse_fast_path_matches_torch_sgd():
    def run(opt_cls):
        torch.manual_seed(0)
        table = torch.nn.Embedding(20, 4, sparse=True)
        dense = torch.nn.Linear(4, 1)
        opt = opt_cls([{"params": table.parameters()}, {"params": dense.parameters()}], lr=0.1)
        for _ in range(3):
            ids = torch.randint(0, 20, (16,))
            dense(table(ids)).square().sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return table.weight.detach(), dense.weight.detach()

    for ours, theirs in zip(run(SGD), run(torch.optim.SGD), strict=True):
        assert torch.allclose(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("sparse", [True, False], ids=["sparse", "dense"])  # dense: under DDP
def test_row_clip_caps_each_rows_summed_step_and_leaves_small_ones(sparse):
    torch.manual_seed(0)
    table = torch.nn.Embedding(6, 3, sparse=sparse)
    dense = torch.nn.Linear(3, 1)
    before = table.weight.detach().clone()
    ids = torch.tensor([0] * 50 + [1, 2, 2])
    dense(table(ids)).sum().backward()
    grad = table.weight.grad.to_dense()
    opt = SGD(
        [{"params": table.parameters()}, {"params": dense.parameters()}], lr=0.01, row_clip=0.2
    )
    opt.step()
    moved = table.weight.detach() - before
    limit = 0.2 * before.norm(dim=1).clamp(min=0.1)
    plain = -0.01 * grad
    for row in range(6):
        if plain[row].norm() <= limit[row]:  # rows 1-5: as plain SGD
            assert torch.allclose(moved[row], plain[row], atol=1e-6)
        else:  # row 0, looked up 50 times: the same direction, shortened to the cap
            assert torch.allclose(moved[row].norm(), limit[row], atol=1e-6)
            assert torch.allclose(
                moved[row] / limit[row], plain[row] / plain[row].norm(), atol=1e-5
            )
    assert plain[0].norm() > limit[0] and plain[1].norm() < limit[1]  # both cases were seen


def test_row_clip_on_an_accelerator_sums_densely_to_the_same_step():
    """On a GPU the sparse step is summed into a table-sized buffer instead of by
    `torch.unique` (which waits for the device): the same clipped step."""
    from multicon.optim import _clip_sparse_rows, _clip_sparse_rows_dense

    torch.manual_seed(0)
    table = torch.randn(8, 3)
    rows = torch.tensor([5, 0, 5, 5, 2, 0, 5])
    step = torch.randn(len(rows), 3)
    group = {"row_clip": 0.3, "row_clip_floor": 0.1}
    by_unique = table.clone().index_add_(0, *_clip_sparse_rows(table, rows, step.clone(), group))
    dense = table + _clip_sparse_rows_dense(table, rows, step.clone(), group)
    assert torch.allclose(by_unique, dense, atol=1e-6)
    assert not torch.allclose(dense, table.index_add(0, rows, step))  # something was clipped


def test_row_clip_bad_settings_are_refused():
    from multicon.optim import build_optimizer

    params = torch.nn.Embedding(3, 2, sparse=True).parameters()
    with pytest.raises(ValueError, match="row_clip must be >= 0"):
        SGD(params, lr=0.1, row_clip=-1.0)
    with pytest.raises(ValueError, match="needs momentum=0"):
        SGD(torch.nn.Embedding(3, 2).parameters(), lr=0.1, momentum=0.9, row_clip=1.0)
    with pytest.raises(ValueError, match="option of the 'sgd' optimizer"):
        build_optimizer(torch.nn.Linear(2, 2), "adamw", 0.1, 0.0, row_clip=1.0)


def test_noise_group_without_shared_negatives_is_refused():
    from multicon import methods
    from multicon.text import Vocabulary, Word2Vec

    w2v = Word2Vec.from_vocab(Vocabulary(["a", "b", "c"], [3, 2, 1]), dim=4)
    with pytest.raises(ValueError, match="noise_group needs shared_negatives"):
        methods.sgns(w2v, negative=5, noise_group=64)
    model = methods.sgns(w2v, shared_negatives=2, noise_group=64)
    assert model.directions[0].keys.group_size == 64
