import math

import pytest
import torch

from multicon import InfoNCE, KeySet, contrastive_logits, info_nce


def reference_info_nce(q, k, positive, query_ids, key_ids, temperature):
    """Float64 InfoNCE written out term by term, straight from the definition."""
    q = torch.nn.functional.normalize(q.double(), dim=1)
    k = torch.nn.functional.normalize(k.double(), dim=1)
    losses = []
    for i in range(len(q)):
        pos = torch.exp(q[i] @ k[positive[i]] / temperature)
        denom = pos.clone()
        for j in range(len(k)):
            if j == positive[i] or (query_ids is not None and key_ids[j] == query_ids[i]):
                continue
            denom = denom + torch.exp(q[i] @ k[j] / temperature)
        losses.append(-torch.log(pos / denom))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.5, 0.1, 0.07])
def test_matches_float64_reference_values_and_gradients(temperature):
    q = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    k = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    positive = torch.tensor([0, 1, 2, 3, 4, 5])
    ids = torch.arange(9)
    loss = info_nce(q, KeySet(k, ids, positive), temperature=temperature, query_ids=ids[:6])
    ref = reference_info_nce(q, k, positive, ids[:6], ids, temperature)
    assert abs(loss.item() - ref.item()) < 1e-6
    g = torch.autograd.grad(loss, (q, k))
    g_ref = torch.autograd.grad(ref, (q, k))
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a.double(), b, atol=1e-6)


def test_float32_inputs_match_reference_to_1e6():
    q, k = torch.randn(8, 16), torch.randn(8, 16)
    ids = torch.arange(8)
    loss = info_nce(q, KeySet(k, ids, ids), temperature=0.2, query_ids=ids)
    ref = reference_info_nce(q, k, ids, ids, ids, 0.2)
    assert abs(loss.item() - ref.item()) < 1e-6


def test_same_id_keys_are_masked_but_positive_kept():
    q, k = torch.randn(4, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    # keys 4 and 5 are other captions of images 0 and 1: never negatives of queries 0 and 1
    key_ids = torch.tensor([0, 1, 2, 3, 0, 1])
    query_ids = torch.arange(4)
    positive = torch.arange(4)
    logits = contrastive_logits(
        q, KeySet(k, key_ids, positive), logit_scale=10.0, query_ids=query_ids
    )
    assert torch.isinf(logits[0, 4]) and torch.isinf(logits[1, 5])
    assert torch.isfinite(logits[0, 0]) and torch.isfinite(logits[2, 4])
    loss = info_nce(q, KeySet(k, key_ids, positive), temperature=0.1, query_ids=query_ids)
    ref = reference_info_nce(q, k, positive, query_ids, key_ids, 0.1)
    assert abs(loss.item() - ref.item()) < 1e-6
    unmasked = info_nce(q, KeySet(k, key_ids, positive), temperature=0.1)
    assert unmasked.item() != pytest.approx(loss.item())


def test_symmetric_form_through_the_model_matches_reference():
    from multicon import PairBatch, methods

    image, text = torch.nn.Linear(4, 6).double(), torch.nn.Linear(3, 6).double()
    model = methods.clip(image, text, temperature=0.1, learnable=False)
    a, b, ids = torch.randn(5, 4).double(), torch.randn(5, 3).double(), torch.arange(5)
    loss = model(PairBatch(a, b, ids)).loss
    qa, qb = image(a), text(b)
    ref = (
        reference_info_nce(qa, qb, ids, ids, ids, 0.1)
        + reference_info_nce(qb, qa, ids, ids, ids, 0.1)
    ) / 2
    assert abs(loss.item() - ref.item()) < 1e-6


def test_stable_at_temperature_001():
    q = torch.randn(64, 32, requires_grad=True)
    k = (q.detach() + 0.01 * torch.randn(64, 32)).requires_grad_()
    ids = torch.arange(64)
    loss = info_nce(q, KeySet(k, ids, ids), temperature=0.01, query_ids=ids)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all() and torch.isfinite(k.grad).all()
    ref = reference_info_nce(q, k, ids, ids, ids, 0.01)
    assert abs(loss.item() - ref.item()) < 1e-5


def test_per_query_keys_match_shared_keys():
    q, k = torch.randn(3, 4, dtype=torch.float64), torch.randn(5, 4, dtype=torch.float64)
    ids = torch.arange(5)
    shared = info_nce(q, KeySet(k, ids, torch.tensor([0, 1, 2])), temperature=0.3)
    per_query = info_nce(
        q, KeySet(k.expand(3, 5, 4), ids.expand(3, 5), torch.tensor([0, 1, 2])), temperature=0.3
    )
    assert abs(shared.item() - per_query.item()) < 1e-12


def test_logits_are_float32_under_bf16_autocast():
    loss_fn = InfoNCE(0.1)
    q, k = torch.randn(4, 8), torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qb, kb = torch.nn.Linear(8, 8)(q), torch.nn.Linear(8, 8)(k)
        assert qb.dtype == torch.bfloat16
        logits = loss_fn.logits(qb, KeySet(kb, torch.arange(4), torch.arange(4)))
    assert logits.dtype == torch.float32


def test_learnable_temperature_is_log_parametrised_and_clamped():
    loss_fn = InfoNCE(0.07, learnable=True, max_logit_scale=100.0)
    assert loss_fn.learnable
    assert loss_fn.temperature == pytest.approx(0.07, rel=1e-5)
    with torch.no_grad():
        loss_fn.log_logit_scale.fill_(math.log(1000.0))
    assert loss_fn.logit_scale().item() == pytest.approx(100.0)
    fixed = InfoNCE(0.1)
    assert not fixed.learnable and "log_logit_scale" in dict(fixed.named_buffers())


def test_bad_shapes_get_clear_errors():
    ids = torch.arange(4)
    with pytest.raises(ValueError, match="keys must be"):
        info_nce(torch.randn(4, 8), KeySet(torch.randn(4, 7), ids, ids))
    with pytest.raises(ValueError, match="queries must be"):
        info_nce(torch.randn(4, 8, 2), KeySet(torch.randn(4, 8), ids, ids))
    with pytest.raises(ValueError, match="positive must be"):
        info_nce(torch.randn(4, 8), KeySet(torch.randn(4, 8), ids, ids[:3]))
    with pytest.raises(ValueError, match="temperature"):
        InfoNCE(0.0)
    with pytest.raises(ValueError, match="max_logit_scale"):
        InfoNCE(0.001)


def reference_nt_xent(za, zb, temperature):
    """SimCLR's NT-Xent in float64: 2B anchors, each with one positive and 2B - 2 negatives."""
    z = torch.nn.functional.normalize(torch.cat([za, zb]).double(), dim=1)
    n = len(za)
    losses = []
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = sum(torch.exp(z[i] @ z[j] / temperature) for j in range(2 * n) if j != i)
        losses.append(-torch.log(torch.exp(z[i] @ z[pos] / temperature) / denom))
    return torch.stack(losses).mean()


def test_queries_as_negatives_is_nt_xent():
    from multicon import PairBatch, methods

    encoder = torch.nn.Linear(4, 6).double()
    model = methods.simclr(encoder, temperature=0.5)
    a, b = torch.randn(5, 4).double(), torch.randn(5, 4).double()
    loss = model(PairBatch(a, b, torch.arange(5))).loss
    ref = reference_nt_xent(encoder(a), encoder(b), 0.5)
    assert abs(loss.item() - ref.item()) < 1e-9
    plain = methods.clip(encoder, encoder, temperature=0.5, learnable=False)  # no query keys
    assert abs(plain(PairBatch(a, b, torch.arange(5))).loss.item() - ref.item()) > 1e-3
