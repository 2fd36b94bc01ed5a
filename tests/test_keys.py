import pytest
import torch

from multicon import PairBatch, cosine_momentum, methods
from multicon.keys import (
    BatchKeys,
    KeyQueue,
    MomentumEncoder,
    PositiveAndQueue,
    StepInputs,
    View,
)


def queue_of(size: int, dim: int) -> KeyQueue:
    return KeyQueue(BatchKeys(torch.nn.Identity()), size, dim)


def view_of(keys: torch.Tensor, ids: torch.Tensor) -> View:
    """A view whose key inputs are ``keys`` themselves (sources over an identity encoder)."""
    return View(StepInputs(PairBatch(keys, keys, ids)), reverse=False)


def test_queue_wraps_fifo_with_uneven_batches():
    queue = queue_of(size=7, dim=2)
    for step, n in enumerate([3, 3, 2, 3]):  # 7 is not divisible by 3; last batch smaller
        ids = torch.arange(n) + 10 * step
        queue.enqueue(torch.randn(n, 2), ids)
    # 11 keys through a queue of 7: the 4 oldest (step 0 and first of step 1) are gone
    assert sorted(queue.ids.tolist()) == sorted([11, 12, 20, 21, 30, 31, 32])
    assert int(queue.filled) == 7 and int(queue.ptr) == 11 % 7


def test_logits_use_queue_as_it_was_before_this_steps_enqueue():
    torch.manual_seed(0)
    model = methods.moco_v2(torch.nn.Linear(3, 4), queue_size=16, dim=4, momentum=0.9)
    queue = model.directions[0].keys.queue
    x = torch.randn(4, 3)
    batch = PairBatch(x, x + 0.01, torch.arange(4))
    out = model(batch)
    assert int(queue.filled) == 0  # scoring enqueued nothing
    model.after_step(out, progress=0.0)
    assert int(queue.filled) == 4
    keys = model.directions[0].keys(View(StepInputs(batch), reverse=False))
    assert keys.own_keys.shape[0] == 4 and keys.keys.shape[0] == 4  # own key + the queue


def test_own_old_key_in_queue_is_masked():
    queue = queue_of(8, 2)
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    queue.enqueue(old, torch.tensor([0, 1]))
    source = PositiveAndQueue(queue)
    ks = source(view_of(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 5])))
    # own positive per query (column 0) + the 2 queued keys shared by all queries, not copied
    assert ks.own_keys.shape == (2, 2) and ks.keys.shape == (2, 2)
    from multicon import contrastive_logits

    logits = contrastive_logits(
        torch.tensor([[1.0, 0.0], [0.0, 1.0]]), ks, logit_scale=1.0, query_ids=torch.tensor([0, 5])
    )
    assert torch.isinf(logits[0, 1])  # query 0's own old key
    assert torch.isfinite(logits[1]).all()  # id 5 has no old key


def test_similarity_by_age_orders_keys_newest_first_across_a_wrap():
    queue = queue_of(size=6, dim=3)
    basis = torch.eye(3)
    for step in range(5):  # steps 0..4, two keys each: steps 2, 3, 4 remain, wrapped
        queue.enqueue(basis[step % 3].expand(2, 3) * (step + 1), torch.arange(2))
    with pytest.raises(ValueError, match="groups <= the 6 queued keys"):
        queue.similarity_by_age(basis[:1], groups=7)
    # newest (step 4: e1), then step 3 (e0), then step 2 (e2); cosine ignores the scale
    assert queue.similarity_by_age(basis[1:2], groups=3).tolist() == [1.0, 0.0, 0.0]
    assert queue.similarity_by_age(basis[2:3], groups=3).tolist() == [0.0, 0.0, 1.0]
    assert queue.similarity_by_age(basis[2:3], groups=1).tolist() == pytest.approx([1 / 3])


def test_after_step_reports_queue_drift_only_when_asked_and_full():
    torch.manual_seed(0)
    model = methods.moco_v2(torch.nn.Linear(3, 4), queue_size=8, dim=4, momentum=0.9)
    queue = model.directions[0].keys.queue
    metrics = []
    for step in range(3):
        x = torch.randn(4, 3)
        out = model(PairBatch(x, x + 0.01, torch.arange(4) + 4 * step))
        keys = out.pending[queue][0]
        expected = queue.similarity_by_age(keys, groups=4) if queue.is_full() else None
        metrics.append(model.after_step(out, progress=step / 3, diagnostics=step > 0))
        if expected is not None:  # measured before this step's keys went in
            assert metrics[-1]["queue_cos_new"] == pytest.approx(expected[0].item())
            assert metrics[-1]["queue_cos_old"] == pytest.approx(expected[-1].item())
    assert "queue_cos_new" not in metrics[1]  # half full: nothing to compare yet
    assert set(metrics[2]) == {"momentum", "queue_cos_new", "queue_cos_old"}
    out = model(PairBatch(x, x, torch.arange(4)))
    assert set(model.after_step(out, progress=1.0)) == {"momentum"}  # not asked


def test_queue_state_is_in_state_dict():
    queue = queue_of(4, 2)
    queue.enqueue(torch.ones(2, 2), torch.tensor([3, 4]))
    restored = queue_of(4, 2)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.keys, queue.keys) and int(restored.ptr) == 2


def test_cosine_momentum_schedule():
    assert cosine_momentum(0.99, 1.0, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 1.0, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0, 1.0) == pytest.approx(1.0)


def test_momentum_encoder_is_an_ema_without_gradient():
    online = torch.nn.Linear(2, 2)
    ema = MomentumEncoder(online, momentum=0.75)
    before = ema.encoder.weight.clone()
    with torch.no_grad():
        online.weight.add_(4.0)
    m = ema.update(progress=0.0)
    assert m == pytest.approx(0.75)
    assert torch.allclose(ema.encoder.weight, 0.75 * before + 0.25 * online.weight)
    assert not any(p.requires_grad for p in ema.encoder.parameters())
    assert not ema(torch.randn(3, 2)).requires_grad
    with pytest.raises(ValueError, match="base <= final"):
        MomentumEncoder(online, momentum=(1.1, 1.0))


def test_momentum_encoder_shares_frozen_eval_parts_and_copies_the_rest():
    frozen = torch.nn.Linear(3, 3).requires_grad_(False).eval()
    moving_stats = torch.nn.BatchNorm1d(3).requires_grad_(False)  # train mode: stats move
    online = torch.nn.Sequential(frozen, moving_stats, torch.nn.Linear(3, 2))
    ema = MomentumEncoder(online, momentum=0.5)
    assert ema.encoder[0] is frozen
    assert ema.encoder[1] is not moving_stats and ema.encoder[2] is not online[2]
    assert online[2].weight.requires_grad  # the copy's freezing does not reach the online one
    before = ema.encoder[2].weight.clone()
    with torch.no_grad():
        online[2].weight.add_(2.0)
    ema.update(progress=0.0)
    assert torch.allclose(ema.encoder[2].weight, 0.5 * before + 0.5 * online[2].weight)


def test_momentum_model_only_trains_online_encoder():
    encoder = torch.nn.Linear(3, 4)
    model = methods.moco_v3(encoder, torch.nn.Linear(4, 4), momentum=0.99)
    x = torch.randn(5, 3)
    model(PairBatch(x, x, torch.arange(5))).loss.backward()
    assert encoder.weight.grad is not None
    ema = model.directions[0].keys.encoder
    assert ema.encoder.weight.grad is None
