"""Records tests/method_references.json from the engine before the redesign (commit 7dc94b4)."""

import json

import torch
from method_cases import WithPredictor, encoders, run
from multicon.loss import InfoNCE
from multicon.negatives import FeatureQueue, InBatchNegatives, LogQCorrection, MomentumQueue

from multicon.model import ContrastiveModel

torch.set_default_dtype(torch.float64)


def old_model(case, e):
    if case == "simclr":
        return ContrastiveModel(e["enc"], symmetric=True, queries_as_negatives=True,
                                loss=InfoNCE(0.5))
    if case == "moco_v2":
        return ContrastiveModel(e["enc"], negatives=MomentumQueue(8, 3, in_batch=False),
                                momentum=0.99, loss=InfoNCE(0.2))
    if case == "moco_v3":
        m = ContrastiveModel(WithPredictor(e["enc"], e["pred"]), symmetric=True, momentum=0.99,
                             loss=InfoNCE(0.2))
        m.momentum_query.encoder.use_predictor = False  # keys skip the predictor
        return m
    if case == "clip":
        return ContrastiveModel(e["image"], e["text"], symmetric=True,
                                loss=InfoNCE(0.07, learnable=True))
    if case in ("albef", "albef_online", "xbm"):
        return ContrastiveModel(
            e["image"], e["text"], symmetric=True, loss=InfoNCE(0.07, learnable=True),
            momentum=None if case == "xbm" else 0.995,
            online_batch_keys=case == "albef_online",
            distill=0.4 if case == "albef" else 0.0,
            negatives=MomentumQueue(8, 3), reverse_negatives=MomentumQueue(8, 3))
    if case == "feature_queue":
        return ContrastiveModel(e["image"], e["text"], symmetric=True,
                                loss=InfoNCE(0.07, learnable=True),
                                negatives=FeatureQueue(e["text"], 8),
                                reverse_negatives=InBatchNegatives())
    w2v = e["w2v"]
    if case == "w2v_sgns":
        return w2v.contrastive_model(negative=3)
    if case == "w2v_sgns_shared":
        return w2v.contrastive_model(negative=3, shared_negatives=4, noise_group=2)
    freq = torch.arange(12, 0, -1).double()
    target = w2v.vocab.counts.double().pow(0.75)
    if case == "w2v_infonce_batch":
        neg = LogQCorrection(InBatchNegatives(), freq, target)
    elif case == "w2v_infonce_queue":
        neg = LogQCorrection(MomentumQueue(8, 3, in_batch=True), freq, target)
    return w2v.contrastive_model(negatives=neg, loss=InfoNCE(0.1))


CASES = ["simclr", "moco_v2", "moco_v3", "clip", "albef", "albef_online", "xbm",
         "feature_queue", "w2v_sgns", "w2v_sgns_shared", "w2v_infonce_batch",
         "w2v_infonce_queue"]
refs = {}
for case in CASES:
    e = encoders(case)
    model = old_model(case, e)
    refs[case] = run(model, case, e, lambda out, p, m=model: m.after_step(out, progress=p))
    print(case, [round(r["loss"], 6) for r in refs[case]])
with open("tests/method_references.json", "w") as f:
    json.dump(refs, f, indent=0)
