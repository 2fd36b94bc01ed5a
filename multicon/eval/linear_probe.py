"""Linear probe: a linear classifier trained on frozen features computed once.

The standard read-out of a self-supervised encoder (SimCLR, MoCo): features are extracted once
(`multicon.eval.features.extract_features`), standardised with the training split's statistics,
and a single linear layer is trained on them on the device (seconds on a GPU, where the
classic recipe retrains the whole augmented pipeline for 100 epochs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _check(features: torch.Tensor, labels: torch.Tensor | None, split: str) -> torch.Tensor:
    if features.dim() != 2:
        raise ValueError(f"{split} features must be (N, D), got {tuple(features.shape)}")
    if labels is None:
        raise ValueError(f"the linear probe needs {split} labels, but none were given")
    labels = torch.as_tensor(labels).long()
    if labels.shape != (len(features),):
        raise ValueError(f"{len(features)} {split} features but labels of {tuple(labels.shape)}")
    return labels


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    epochs: int = 100,
    batch_size: int = 1024,
    lr: float = 1e-3,
    weight_decay: float = 1e-6,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Train a linear classifier (Adam, cosine schedule) on frozen features; report top-1.

    Returns ``{"top1": test accuracy, "train_top1": train accuracy}`` in [0, 1].

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(200, 4, generator=g); y = (x[:, 0] > 0).long()
        >>> linear_probe(x, y, x, y, epochs=30, batch_size=50, lr=0.05)["top1"] > 0.95
        True
    """
    train_labels = _check(train_features, train_labels, "train")
    test_labels = _check(test_features, test_labels, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train features have dim {train_features.shape[1]}, test {test_features.shape[1]}"
        )
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    device = torch.device(device) if device is not None else train_features.device
    x = train_features.to(device, torch.float32)
    y = train_labels.to(device)
    mean, std = x.mean(0, keepdim=True), x.std(0, keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    g = torch.Generator().manual_seed(seed)
    classifier = torch.nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():  # seeded on the CPU, then moved: the same probe on any device
        classifier.weight.normal_(0, 0.01, generator=g)
        classifier.bias.zero_()
    classifier.to(device)
    opt = torch.optim.Adam(classifier.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(x) / batch_size)
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=g).to(device)
        for idx in order.split(batch_size):
            loss = F.cross_entropy(classifier(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    @torch.no_grad()
    def accuracy(feats: torch.Tensor, labels: torch.Tensor) -> float:
        z = (feats.to(device, torch.float32) - mean) / std
        pred = torch.cat([classifier(c).argmax(1) for c in z.split(8192)])
        return (pred.cpu() == labels.cpu()).float().mean().item()

    return {"top1": accuracy(test_features, test_labels), "train_top1": accuracy(x * std + mean, y)}
