"""Each named method equals the flag-built engine it replaced: the same loss and gradients, in
float64, over three SGD steps (queues filling, momentum encoders moving). The reference values
were recorded from that engine (see tests/method_cases.py)."""

import json
from pathlib import Path

import pytest
import torch
from method_cases import encoders, run

from multicon import methods

REFS = json.loads((Path(__file__).parent / "method_references.json").read_text())


def build(case: str, e: dict):
    if case == "simclr":
        return methods.simclr(e["enc"], temperature=0.5)
    if case == "moco_v2":
        return methods.moco_v2(e["enc"], queue_size=8, dim=3, momentum=0.99, temperature=0.2)
    if case == "moco_v3":
        return methods.moco_v3(e["enc"], e["pred"], momentum=0.99, temperature=0.2)
    if case == "clip":
        return methods.clip(e["image"], e["text"], temperature=0.07, learnable=True)
    if case == "albef":
        return methods.albef(e["image"], e["text"], 8, 3, momentum=0.995, distill=0.4)
    if case == "albef_online":
        return methods.albef(
            e["image"], e["text"], 8, 3, momentum=0.995, distill=0.0, online_batch_keys=True
        )
    if case == "xbm":
        return methods.albef(e["image"], e["text"], 8, 3, momentum=None, distill=0.0)
    if case == "feature_queue":
        return methods.clip_feature_queue(e["image"], e["text"], 8)
    w2v = e["w2v"]
    if case == "w2v_sgns":
        return methods.sgns(w2v, negative=3)
    if case == "w2v_sgns_shared":
        return methods.sgns(w2v, negative=3, shared_negatives=4, noise_group=2)
    freq = torch.arange(12, 0, -1).double()
    queue = 8 if case == "w2v_infonce_queue" else 0
    return methods.word2vec_infonce(w2v, 0.1, queue_size=queue, key_freq=freq)


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # queues and temperatures as the references had them
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("case", sorted(REFS))
def test_method_equals_the_composition_it_replaced(case, float64):
    e = encoders(case)
    model = build(case, e)
    got = run(model, case, e, lambda out, p: model.after_step(out, progress=p))
    for step, (want, have) in enumerate(zip(REFS[case], got, strict=True)):
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-10, abs=1e-12), (case, step)
        assert sorted(have["grads"]) == sorted(want["grads"]), (case, step)
        for name, g in want["grads"].items():
            assert torch.allclose(
                torch.tensor(have["grads"][name]), torch.tensor(g), rtol=1e-9, atol=1e-12
            ), (case, step, name)


def _frozen_linear():
    return torch.nn.Linear(4, 3).requires_grad_(False)


def _bad_combinations():
    from multicon import BatchKeys, Chain, ContrastiveModel, Direction, OtherQueries, SigmoidLoss
    from multicon.keys import MomentumEncoder

    enc, table = torch.nn.Linear(4, 3), torch.nn.Embedding(10, 3)
    return {
        "queue dim": (
            lambda: methods.moco_v2(enc, queue_size=8, dim=5),
            ValueError,
            "dim 5 does not match the fill encoder's output size 3",
        ),
        "negative queue": (lambda: methods.moco_v2(enc, -1, 3), ValueError, "queue_size"),
        "momentum on a locked tower": (
            lambda: MomentumEncoder(_frozen_linear()),
            ValueError,
            "momentum: the encoder has no trainable parameters",
        ),
        "towers of two sizes": (
            lambda: methods.albef(enc, torch.nn.Linear(5, 4), 8, 3),
            ValueError,
            "embed to 3 and 4",
        ),
        "feature queue on trained towers": (
            lambda: methods.clip_feature_queue(enc, torch.nn.Linear(5, 3), 8),
            ValueError,
            "needs a locked tower",
        ),
        "distill without a teacher": (
            lambda: methods.albef(enc, torch.nn.Linear(5, 3), 8, 3, momentum=None),
            ValueError,
            "distill needs momentum towers",
        ),
        "not a key source": (lambda: Direction(enc, enc), TypeError, "keys must be a KeySource"),
        "not a loss": (
            lambda: ContrastiveModel([Direction(enc, BatchKeys(enc))], torch.nn.MSELoss()),
            TypeError,
            "loss must be InfoNCE or SigmoidLoss",
        ),
        "sigmoid over in-batch keys": (
            lambda: ContrastiveModel([Direction(table, BatchKeys(table))], SigmoidLoss("sum")),
            ValueError,
            "does not learn",
        ),
        "queries first in a chain": (
            lambda: Chain(OtherQueries(), BatchKeys(enc)),
            ValueError,
            "first source with the positives",
        ),
    }


@pytest.mark.parametrize("case", sorted(_bad_combinations()))
def test_bad_combinations_are_refused_when_the_model_is_built(case):
    build, error, message = _bad_combinations()[case]
    with pytest.raises(error, match=message):
        build()


def test_a_queue_smaller_than_the_global_batch_is_refused_before_training(tmp_path):
    from multicon import AffineViewPairs, TrainConfig, Trainer

    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    model = methods.moco_v2(encoder, queue_size=8, dim=3)
    config = TrainConfig(output_dir=str(tmp_path), batch_size=16, log_with="", progress_bar=False)
    with pytest.raises(ValueError, match="queue_size 8 is smaller than the global batch of 16"):
        Trainer(model, AffineViewPairs(torch.rand(64, 1, 8, 8)), config)
    assert not (tmp_path / "checkpoints").exists()  # refused before any work


def test_each_method_declares_its_reduction():
    from method_cases import encoders as make

    assert methods.simclr(torch.nn.Linear(4, 3)).reduction == "mean"
    assert methods.sgns(make("w2v_sgns")["w2v"]).reduction == "sum"
