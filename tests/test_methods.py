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
