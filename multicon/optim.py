"""Optimizers and learning-rate schedules the trainer builds from its config."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017), as SimCLR uses.

    Each parameter's step is scaled by ``trust_coefficient * ||w|| / ||g + wd * w||``. Parameter
    groups with ``lars_exclude=True`` (biases and norm layers, by `parameter_groups`) take plain
    SGD steps without weight decay, as in SimCLR.

    Example:
        >>> import torch
        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = LARS([w], lr=0.1)
        >>> w.sum().backward(); opt.step()
        >>> bool((w < 1).all())
        True
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            eps=eps,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d_p = p.grad
                if not group["lars_exclude"]:
                    d_p = d_p.add(p, alpha=group["weight_decay"])
                    w_norm, g_norm = torch.norm(p), torch.norm(d_p)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                        torch.ones_like(w_norm),
                    )
                    d_p = d_p.mul(trust)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = d_p.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(d_p)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


class SGD(torch.optim.SGD):
    """`torch.optim.SGD`, with plain sparse-gradient steps applied by one ``index_add_``.

    A sparse gradient (an embedding table's touched rows) under plain SGD (no momentum, weight
    decay or maximize) is ``p[rows] -= lr * values``. PyTorch's ``dense.add_(sparse, alpha=-lr)``
    is slower on CPU than scaling the values and calling ``index_add_`` (measured for 8192 rows
    of 100: 400 vs 151 µs alone, 455 vs 260-320 µs per table in a word2vec run); word2vec
    takes one per table per batch. Every other parameter goes through `torch.optim.SGD`
    unchanged.

    Example:
        >>> table = torch.nn.Embedding(4, 2, sparse=True)
        >>> _ = torch.nn.init.zeros_(table.weight)
        >>> table(torch.tensor([1, 1, 3])).sum().backward()
        >>> SGD(table.parameters(), lr=0.5).step()
        >>> table.weight[:, 0].tolist()   # row 1 twice, row 3 once
        [0.0, -1.0, 0.0, -0.5]

    ``row_clip=r`` caps the step of each row of a parameter (an embedding table's word; sparse
    or dense gradient) at ``r * max(||row||, row_clip_floor)`` (L2): a large batch sums
    thousands of gradients into a frequent word's row at one stale point, where word2vec would
    have taken them one at a time, each seeing the last (word2vec at 65,536 pairs a step
    diverged without it; docs/word2vec.md). Rows below the cap step as before.

        >>> table.zero_grad(); _ = torch.nn.init.ones_(table.weight)  # rows of norm sqrt(2)
        >>> table(torch.tensor([1] * 100 + [3])).sum().backward()
        >>> SGD(table.parameters(), lr=0.05, row_clip=0.1).step()
        >>> [round(v, 3) for v in table.weight[:, 0].tolist()]  # row 1 capped, row 3 not
        [1.0, 0.9, 1.0, 0.95]
    """

    def __init__(
        self, params, lr: float = 1e-3, *, row_clip: float = 0.0, row_clip_floor: float = 0.1, **kw
    ) -> None:
        if row_clip < 0 or row_clip_floor <= 0:
            raise ValueError(
                f"row_clip must be >= 0 and row_clip_floor > 0, got {row_clip}, {row_clip_floor}"
            )
        super().__init__(params, lr=lr, **kw)
        for group in self.param_groups:
            group.setdefault("row_clip", row_clip)
            group.setdefault("row_clip_floor", row_clip_floor)
            if group["row_clip"] and (group["momentum"] or group["weight_decay"]):
                raise ValueError(
                    "row_clip clips plain SGD steps: it needs momentum=0 and "
                    f"weight_decay=0, got {group['momentum']} and {group['weight_decay']}"
                )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        done = []
        for group in self.param_groups:
            if group["momentum"] or group["weight_decay"] or group.get("maximize"):
                continue
            for p in group["params"]:
                grad = p.grad
                if grad is None:
                    continue
                lr = float(group["lr"])
                if grad.is_sparse and grad.sparse_dim() == 1:
                    rows, step = grad._indices()[0], grad._values().mul(-lr)
                    if not group.get("row_clip"):
                        p.index_add_(0, rows, step)
                    elif p.device.type == "cpu":
                        p.index_add_(0, *_clip_sparse_rows(p, rows, step, group))
                    else:  # no torch.unique on an accelerator: see _clip_sparse_rows_dense
                        p.add_(_clip_sparse_rows_dense(p, rows, step, group))
                elif group.get("row_clip") and grad.dim() >= 2:  # a table under DDP: dense
                    p.add_(_clip_rows(p, grad.mul(-lr), group))
                else:
                    continue
                done.append((p, grad))
                p.grad = None  # stepped: hidden from torch's step below
        super().step()
        for p, grad in done:
            p.grad = grad
        return loss


def _clip_rows(rows: torch.Tensor, step: torch.Tensor, group: dict) -> torch.Tensor:
    """``step`` with each row shortened to at most ``row_clip * max(||row||, row_clip_floor)``
    (``rows``: the parameter's rows being stepped, in the same order)."""
    norms = step.flatten(1).norm(dim=1)
    limit = rows.flatten(1).norm(dim=1).clamp(min=group["row_clip_floor"]) * group["row_clip"]
    scale = (limit / norms.clamp(min=torch.finfo(norms.dtype).tiny)).clamp(max=1.0)
    return step.mul_(scale.view(-1, *[1] * (step.dim() - 1)))


def _clip_sparse_rows(p: torch.Tensor, rows: torch.Tensor, step: torch.Tensor, group: dict):
    """Sum a sparse step's entries per row (a row looked up many times has many), then clip."""
    rows, inverse = torch.unique(rows, return_inverse=True)
    summed = step.new_zeros(len(rows), *step.shape[1:]).index_add_(0, inverse, step)
    return rows, _clip_rows(p[rows], summed, group)


def _clip_sparse_rows_dense(p: torch.Tensor, rows: torch.Tensor, step: torch.Tensor, group: dict):
    """The same clipped step, summed into a table-sized buffer: `torch.unique` makes the host
    wait for the device (its output size), a dense sum does not. On a GPU a table's worth of
    memory traffic costs less than that wait; on the CPU it costs more, so the CPU sums by
    `unique`."""
    return _clip_rows(p, torch.zeros_like(p).index_add_(0, rows, step), group)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split so that biases and norm weights get no weight decay.

    Every 0-d and 1-d parameter goes to the second group (no weight decay, no LARS scaling),
    as open_clip does: biases, norm gains and biases, and the losses' own scalars, CLIP's
    learnable temperature (``log_logit_scale``) and SigLIP's logit scale and bias (decayed,
    they would be pulled towards τ = 1 and b = 0 however the loss pulls them).

    Example:
        >>> from multicon import methods
        >>> model = methods.siglip(nn.Linear(3, 2), nn.Linear(4, 2))
        >>> decay, no_decay = parameter_groups(model, weight_decay=0.1)
        >>> [(n, no_decay["weight_decay"]) for n, p in model.named_parameters()
        ...  if any(p is q for q in no_decay["params"]) and n.startswith("loss")]
        [('loss.log_logit_scale', 0.0), ('loss.logit_bias', 0.0)]
    """
    decay, no_decay = [], []
    for _name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


def _fusable(groups: list[dict]) -> bool:
    """Whether torch's fused AdamW kernel takes these parameters: dense floating-point tensors
    on the CPU or a CUDA device. It updates each tensor in one pass; the default CPU loop
    makes about ten (sqrt, lerp, addcmul, ...), a quarter of a ViT-B/32 CLIP step on the CPU."""
    params = [p for g in groups for p in g["params"]]
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    row_clip: float = 0.0,
) -> torch.optim.Optimizer:
    """AdamW, SGD (Nesterov-free, with momentum) or LARS over the model's trainable parameters
    (``row_clip``: see `SGD`). AdamW uses torch's fused kernel where it can (`_fusable`)."""
    groups = parameter_groups(model, weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters")
    if row_clip and name != "sgd":
        raise ValueError(f"row_clip is an option of the 'sgd' optimizer, not of {name!r}")
    if name == "adamw":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.AdamW(groups, lr=lr, fused=_fusable(groups) or None)
    if name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return SGD(groups, lr=lr, momentum=momentum, row_clip=row_clip)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw', 'sgd' or 'lars'")


def lr_schedule(
    optimizer: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0
) -> LambdaLR:
    """Linear warmup, then ``cosine`` decay to 0, ``linear`` decay to 0 (word2vec) or ``constant``.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0)
        >>> sched = lr_schedule(opt, "cosine", total_steps=10, warmup_steps=2)
        >>> [round(f(s), 2) for f in sched.lr_lambdas for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if name not in ("cosine", "linear", "constant"):
        raise ValueError(f"unknown schedule {name!r}; choose 'cosine', 'linear' or 'constant'")
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1, got {total_steps}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if name == "constant":
            return 1.0
        progress = min((step - warmup_steps) / max(1, total_steps - warmup_steps), 1.0)
        if name == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)
