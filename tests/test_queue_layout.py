"""MoCo v2's queue layout (own positive + a shared queue) scores like per-query key copies."""

import torch

from multicon.loss import InfoNCE, KeySet
from multicon.negatives import MomentumQueue


def test_own_keys_layout_equals_per_query_copies():
    torch.manual_seed(0)
    b, k, d = 6, 10, 4
    queue = MomentumQueue(k, d, in_batch=False)
    queue.update(torch.randn(k, d), torch.arange(k))
    ids = torch.tensor([0, 3, 20, 21, 22, 23])  # ids 0 and 3 also sit in the queue
    q = torch.randn(b, d, requires_grad=True)
    keys = torch.randn(b, d)
    shared = queue(keys, ids)
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
