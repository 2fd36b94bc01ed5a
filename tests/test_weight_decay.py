"""Weight decay spares what open_clip spares: biases, norm gains, and the losses' learnable
temperature (CLIP's logit scale) and SigLIP's logit scale and bias.

With a zero gradient, a decayed parameter moves (AdamW shrinks it, SGD and LARS add ``wd * w``
to the step); an excluded one must not.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multicon import methods
from multicon.optim import build_optimizer, parameter_groups


def _towers() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    image = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    text = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 4))
    return image, text


def _models() -> dict[str, nn.Module]:
    return {
        "clip": methods.clip(*_towers(), learnable=True),
        "siglip": methods.siglip(*_towers(), learnable=True),
    }


def _step_with_zero_grad(model: nn.Module, optimizer: str) -> dict[str, bool]:
    """Which parameters moved after one step of ``optimizer`` (weight decay 0.5, lr 0.1)
    with every gradient zero."""
    opt = build_optimizer(model, optimizer, lr=0.1, weight_decay=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    return {n: not torch.equal(before[n], p) for n, p in model.named_parameters()}


@pytest.mark.parametrize("optimizer", ["adamw", "sgd", "lars"])
@pytest.mark.parametrize("method", ["clip", "siglip"])
def test_logit_scale_and_bias_get_no_weight_decay(method: str, optimizer: str) -> None:
    model = _models()[method]
    moved = _step_with_zero_grad(model, optimizer)
    owned = {n for n, _ in model.loss.named_parameters(prefix="loss")}
    expected = {"loss.log_logit_scale"} | ({"loss.logit_bias"} if method == "siglip" else set())
    assert owned == expected  # the loss's learnable parameters, all of them
    for name in owned:
        assert not moved[name], f"{name} was decayed by {optimizer}"
    # biases and norm gains neither; the matrices are decayed (weight decay is on)
    spared = [n for n in moved if n.endswith(".bias") or ".1." in n]
    assert spared and not any(moved[n] for n in spared), [n for n in spared if moved[n]]
    matrices = [n for n, p in model.named_parameters() if p.ndim >= 2]
    assert matrices and all(moved[n] for n in matrices)


@pytest.mark.parametrize("method", ["clip", "siglip"])
def test_a_shared_logit_scale_gets_no_weight_decay(method: str) -> None:
    """The caption recipe shares its DualEncoder's ``log_logit_scale`` with the loss: one
    parameter, in the no-decay group once, not moved by AdamW's decay."""
    scale = nn.Parameter(torch.tensor(2.0))
    model = getattr(methods, method)(*_towers(), logit_scale=scale)
    groups = parameter_groups(model, weight_decay=0.5)
    no_decay = [p for g in groups if g["weight_decay"] == 0.0 for p in g["params"]]
    assert sum(p is scale for p in no_decay) == 1
    assert not _step_with_zero_grad(model, "adamw")["loss.log_logit_scale"]
    assert scale.item() == 2.0
