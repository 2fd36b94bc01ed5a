"""Fixed float64 set-ups shared by the method reference tests (tests/test_methods.py).

Each case is encoders, three batches and a learning rate; `run` trains a model three plain-SGD
steps on them and records the loss and the gradient of every named parameter at each step.
The reference values in ``tests/method_references.json`` were recorded from the engine before
the redesign (the flag-built ``ContrastiveModel`` of commit 7dc94b4, by
``tests/make_method_references.py`` in the commit that added this file), so each named method
is held to the composition it replaced.
"""

from __future__ import annotations

import torch

from multicon.encoders.tower import Tower
from multicon.pairs.base import PairBatch

B, STEPS, LR = 6, 3, 0.1


class WithPredictor(torch.nn.Module):
    """An encoder followed by a predictor, as MoCo v3's query side."""

    def __init__(self, encoder, predictor):
        super().__init__()
        self.encoder, self.predictor = encoder, predictor
        self.use_predictor = True  # the old engine's MoCo v3 switched it off on the EMA copy

    def forward(self, x):
        z = self.encoder(x)
        return self.predictor(z) if self.use_predictor else z


class Locked(Tower):
    """A frozen backbone and a trained projection (a locked tower)."""

    def __init__(self, n_in: int, dim: int):
        super().__init__(torch.nn.Linear(n_in, 7), feature_dim=7, embed_dim=dim, frozen=True)

    def features(self, x):
        return self.backbone(x)


def encoders(case: str) -> dict[str, torch.nn.Module]:
    """The case's trainable modules, float64, seeded."""
    torch.manual_seed(0)
    if case in ("simclr", "moco_v2"):
        return {"enc": torch.nn.Linear(4, 3).double()}
    if case == "moco_v3":
        return {"enc": torch.nn.Linear(4, 3).double(), "pred": torch.nn.Linear(3, 3).double()}
    if case in ("clip", "albef", "albef_online", "xbm"):
        return {"image": torch.nn.Linear(4, 3).double(), "text": torch.nn.Linear(5, 3).double()}
    if case == "feature_queue":
        return {"image": torch.nn.Linear(4, 3).double(), "text": Locked(5, 3).double()}
    if case.startswith("w2v"):
        from multicon.text import Vocabulary, Word2Vec

        vocab = Vocabulary([f"w{i}" for i in range(12)], list(range(40, 16, -2)))
        w2v = Word2Vec.from_vocab(vocab, dim=3, sparse=False).double()
        with torch.no_grad():  # a non-zero output table, so the first step is informative
            w2v.output_embeddings.weight.normal_(0, 0.3)
        return {"w2v": w2v}
    raise ValueError(case)


def batches(case: str) -> list[PairBatch]:
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        if case.startswith("w2v"):
            q = torch.randint(0, 12, (B,), generator=g)
            k = torch.randint(0, 12, (B,), generator=g)
            out.append(PairBatch(q, k, k.clone()))
            continue
        n_key = 5 if case in ("clip", "albef", "albef_online", "xbm", "feature_queue") else 4
        q = torch.randn(B, 4, generator=g, dtype=torch.float64)
        k = torch.randn(B, n_key, generator=g, dtype=torch.float64)
        if n_key == 4:
            k = q + 0.3 * k
        ids = torch.tensor([0, 1, 2, 3, 1, 5])  # a repeated id: masking is exercised
        out.append(PairBatch(q, k, ids))
    return out


def run(model: torch.nn.Module, case: str, named: dict[str, torch.nn.Module], after_step):
    """Three steps: loss, backward, SGD by hand, ``after_step(out, progress)``; returns the
    per-step losses and gradients of ``named``'s parameters (plus any other trainable
    parameter of ``model`` reached through ``extra``)."""
    record = []
    params = {
        f"{name}.{p_name}": p
        for name, module in named.items()
        for p_name, p in module.named_parameters()
        if p.requires_grad
    }
    scale = next((p for n, p in model.named_parameters() if "log_logit_scale" in n), None)
    if scale is not None:  # a learnable temperature
        params["log_logit_scale"] = scale
    for step, batch in enumerate(batches(case)):
        torch.manual_seed(100 + step)  # noise draws
        for p in params.values():
            p.grad = None
        out = model(batch)
        out.loss.backward()
        grads = {}
        with torch.no_grad():
            for name, p in params.items():
                g = p.grad
                if g is None:
                    continue
                g = g.to_dense() if g.is_sparse else g
                grads[name] = g.flatten().tolist()
                p.add_(g, alpha=-LR)
        after_step(out, (step + 1) / STEPS)
        record.append({"loss": out.loss.item(), "grads": grads})
    return record
