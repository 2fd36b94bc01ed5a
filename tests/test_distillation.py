"""ALBEF's momentum distillation: soft labels from the momentum encoders."""

import pytest
import torch
import torch.nn.functional as F

from multicon import (
    ContrastiveModel,
    PairBatch,
    distillation_targets,
    methods,
    soft_cross_entropy,
)


def test_soft_cross_entropy_of_one_hot_is_cross_entropy_with_masked_keys():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=g, dtype=torch.float64)
    positive = torch.tensor([0, 3, 6, 2, 1])
    masked = torch.zeros(5, 7, dtype=torch.bool)
    masked[0, 4] = masked[1, 0] = masked[4, 5] = True  # same-id keys, as contrastive_logits masks
    logits = logits.masked_fill(masked, float("-inf"))
    one_hot = F.one_hot(positive, 7).double()
    got = soft_cross_entropy(logits, one_hot)
    assert torch.isfinite(got)
    assert torch.allclose(got, F.cross_entropy(logits, positive))


def test_distillation_targets_are_distributions_weighted_to_the_positive():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(4, 6, generator=g)
    teacher[2, 5] = float("-inf")
    positive = torch.tensor([1, 0, 4, 5])
    t = distillation_targets(teacher, positive, 0.4)
    assert torch.allclose(t.sum(1), torch.ones(4))
    assert t[2, 5] == 0  # a masked key gets no label
    soft = teacher.softmax(-1)
    assert torch.allclose(t[torch.arange(4), positive], 0.6 + 0.4 * soft[torch.arange(4), positive])
    assert torch.equal(distillation_targets(teacher, positive, 0.0), F.one_hot(positive, 6).float())
    with pytest.raises(ValueError, match="distillation weight"):
        distillation_targets(teacher, positive, 1.5)


def _albef(distill: float) -> ContrastiveModel:
    torch.manual_seed(0)
    image, text = torch.nn.Linear(6, 5).double(), torch.nn.Linear(4, 5).double()
    model = methods.albef(
        image, text, 16, 5, momentum=0.9, distill=distill, temperature=0.1, learnable=False
    )
    return model.double()


def test_distilled_loss_at_init_is_the_mix_of_cross_entropy_and_self_entropy():
    """Before any step the momentum copies equal the online encoders, so the teacher's
    softmax p is the student's: loss = (1 - a) CE + a H(p), H the entropy (per direction)."""
    g = torch.Generator().manual_seed(2)
    batch = PairBatch(
        torch.randn(8, 6, generator=g, dtype=torch.float64),
        torch.randn(8, 4, generator=g, dtype=torch.float64),
        torch.arange(8),
    )
    plain, distilled = _albef(0.0), _albef(0.4)
    q = plain.directions[0].query(batch.query)
    k = plain.directions[1].query(batch.key)
    entropy = 0.0
    for a, b in ((q, k), (k, q)):  # both directions; the queues are empty: in-batch keys only
        p = (F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1).softmax(-1)
        entropy = entropy + -(p * p.log()).sum(-1).mean() / 2
    expected = 0.6 * plain(batch).loss + 0.4 * entropy
    assert torch.allclose(distilled(batch).loss, expected)


def test_distillation_trains_and_fills_the_queues():
    torch.manual_seed(3)
    model = _albef(0.4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(8, 6, dtype=torch.float64)
    key = torch.randn(8, 4, dtype=torch.float64)
    losses = []
    for step in range(30):
        out = model(PairBatch(x, key, torch.arange(8)))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        model.after_step(out, progress=step / 30)
        losses.append(out.loss.item())
    assert losses[-1] < 0.5 * losses[0]
    queues = [d.keys.sources[1] for d in model.directions]
    assert [int(q.filled) for q in queues] == [16, 16]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"momentum": None}, "distill needs momentum towers"),  # no teacher
        ({"online_batch_keys": True}, "online_batch_keys replaces them"),
    ],
)
def test_distill_needs_momentum_keys(kwargs, message):
    image, text = torch.nn.Linear(4, 4), torch.nn.Linear(3, 4)
    with pytest.raises(ValueError, match=message):
        methods.albef(image, text, 8, 4, distill=0.4, **kwargs)


def test_distill_weight_must_be_below_one():
    with pytest.raises(ValueError, match=r"distill must be in \(0, 1\)"):
        methods.albef(torch.nn.Linear(4, 4), torch.nn.Linear(3, 4), 8, 4, distill=1.0)


def test_distill_needs_a_loss_that_takes_soft_targets():
    from multicon import Direction, Distillation, MomentumEncoder, NoiseKeys, SigmoidLoss

    table = torch.nn.Embedding(10, 4)
    teacher = Distillation([MomentumEncoder(table)], 0.4)
    direction = Direction(table, NoiseKeys(table, torch.ones(10)))
    with pytest.raises(TypeError, match="distill needs InfoNCE"):
        ContrastiveModel([direction], SigmoidLoss(), distill=teacher)


def test_soft_cross_entropy_refuses_a_target_of_another_shape():
    with pytest.raises(ValueError, match="target must have the logits' shape"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


def test_dual_encoder_distill_needs_a_queue():
    from dataclasses import replace

    from multicon.caption_recipe import build_contrastive_model
    from multicon.encoders.dual_args import DualEncoderArgs, build_dual_encoder

    args = DualEncoderArgs(text_width=32, text_depth=1, text_heads=2, embed_dim=16, distill=0.4)
    model = build_dual_encoder(args, ["a red square", "a blue circle"] * 9, 16)
    with pytest.raises(ValueError, match="--distill needs a queue"):
        build_contrastive_model(model, args)
    with_queue = build_contrastive_model(model, replace(args, queue_size=8))
    assert with_queue.distill.weight == 0.4
