"""MoCo v2 through the engine: its queue layout, and its steps against a hand-written reference."""

import copy

import torch
import torch.nn.functional as F
from torch import nn

from multicon import methods
from multicon.keys import BatchKeys, KeyQueue, PositiveAndQueue, StepInputs, View
from multicon.losses import InfoNCE, KeySet
from multicon.pairs import PairBatch


def test_own_keys_layout_equals_per_query_copies():
    torch.manual_seed(0)
    b, k, d = 6, 10, 4
    queue = KeyQueue(BatchKeys(nn.Identity()), k, d)
    queue.enqueue(torch.randn(k, d), torch.arange(k))
    ids = torch.tensor([0, 3, 20, 21, 22, 23])  # ids 0 and 3 also sit in the queue
    q = torch.randn(b, d, requires_grad=True)
    keys = torch.randn(b, d)
    view = View(StepInputs(PairBatch(keys, keys, ids)), reverse=False)
    shared = PositiveAndQueue(queue)(view)
    assert shared.keys.shape == (k, d) and shared.own_keys.shape == (b, d)  # no per-query copy
    queued, queued_ids = queue.stored()
    copies = KeySet(
        torch.cat([keys.unsqueeze(1), queued.unsqueeze(0).expand(b, -1, -1)], dim=1),
        torch.cat([ids.unsqueeze(1), queued_ids.unsqueeze(0).expand(b, -1)], dim=1),
        torch.zeros(b, dtype=torch.long),
    )
    loss_fn = InfoNCE(0.2)
    logits_shared = loss_fn.logits(q, shared, ids)
    logits_copies = loss_fn.logits(q, copies, ids)
    assert torch.isinf(logits_shared[0, 1]) and torch.isinf(logits_shared[1, 4])  # own old keys
    assert torch.allclose(logits_shared, logits_copies)
    g1 = torch.autograd.grad(loss_fn(q, shared, ids), q)[0]
    g2 = torch.autograd.grad(loss_fn(q, copies, ids), q)[0]
    assert torch.allclose(g1, g2, atol=1e-6)


def test_moco_v2_steps_match_a_hand_written_reference():
    """Five MoCo v2 training steps equal moco/builder.py's algorithm written out by hand:
    loss, encoder, EMA copy and queue after each step. The queue starts empty and only filled
    slots are scored; while it is empty the batch's keys stand in (MoCo fills it with random
    vectors instead), so the reference does the same."""
    torch.manual_seed(0)
    size, dim, b, tau, m, lr = 12, 4, 4, 0.1, 0.9, 0.5
    encoder = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, dim))
    model = methods.moco_v2(encoder, size, dim, momentum=(m, m), temperature=tau)
    source = model.directions[0].keys
    ref_q = copy.deepcopy(encoder)
    ref_k = copy.deepcopy(encoder).requires_grad_(False)
    queue = torch.empty(0, dim)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    ref_opt = torch.optim.SGD(ref_q.parameters(), lr=lr)
    for step in range(5):
        x_q, x_k = torch.randn(b, 6), torch.randn(b, 6)
        ids = torch.arange(step * b, (step + 1) * b)  # fresh ids: no queued key is masked
        out = model(PairBatch(x_q, x_k, ids))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.after_step(out, progress=step / 5)

        q = F.normalize(ref_q(x_q), dim=1)
        with torch.no_grad():
            k = F.normalize(ref_k(x_k), dim=1)
        if len(queue):
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.T], dim=1)
            ref_loss = F.cross_entropy(logits / tau, torch.zeros(b, dtype=torch.long))
        else:
            ref_loss = F.cross_entropy(q @ k.T / tau, torch.arange(b))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
        with torch.no_grad():
            for e, p in zip(ref_k.parameters(), ref_q.parameters(), strict=True):
                e.mul_(m).add_(p, alpha=1 - m)
        queue = torch.cat([queue, k])[-size:]  # FIFO: the newest `size` keys

        assert torch.allclose(out.loss, ref_loss, atol=1e-6), step
        for ours, theirs in zip(encoder.parameters(), ref_q.parameters(), strict=True):
            assert torch.allclose(ours, theirs, atol=1e-6)
        ema = source.queue.fill.encoder.encoder
        for ours, theirs in zip(ema.parameters(), ref_k.parameters(), strict=True):
            assert torch.allclose(ours, theirs, atol=1e-6)
        stored, _ = source.queue.stored()
        if len(stored) == size:  # a full ring: oldest slot first, as the reference keeps it
            stored = stored.roll(-int(source.queue.ptr), 0)
        assert torch.allclose(F.normalize(stored, dim=1), queue, atol=1e-6)
