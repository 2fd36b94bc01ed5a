"""Weighted k-nearest-neighbour classification on frozen features (InstDisc; lightly's monitor)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    *,
    num_classes: int | None = None,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Predicted labels of ``test_features`` by a cosine-similarity vote of the ``k`` nearest
    training features, each weighted by ``exp(sim / temperature)``.

    Example:
        >>> import torch
        >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
        >>> knn_predict(bank, torch.tensor([0, 0, 1, 1]), torch.tensor([[0.2, 1.0]]), k=2)
        tensor([1])
    """
    if train_features.dim() != 2 or test_features.dim() != 2:
        raise ValueError("kNN features must be 2-d (N, D)")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError(
            f"train features have dim {train_features.shape[1]}, test {test_features.shape[1]}"
        )
    if train_labels is None or len(train_labels) != len(train_features):
        raise ValueError("kNN needs one label per training feature")
    if len(train_features) == 0:
        raise ValueError("kNN needs at least one training feature")
    train_labels = train_labels.to(train_features.device).long()
    num_classes = num_classes or int(train_labels.max()) + 1
    k = min(k, len(train_features))
    bank = F.normalize(train_features.float(), dim=1)
    predictions = []
    for start in range(0, len(test_features), chunk_size):
        q = F.normalize(test_features[start : start + chunk_size].float().to(bank.device), dim=1)
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weights = (sim / temperature).exp()
        votes = torch.zeros(len(q), num_classes, device=bank.device)
        votes.scatter_add_(1, train_labels[idx], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy of `knn_predict` on a labelled test set, in [0, 1]."""
    if test_labels is None or len(test_labels) != len(test_features):
        raise ValueError("kNN accuracy needs one label per test feature")
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    pred = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes=num_classes,
        k=k,
        temperature=temperature,
    )
    return (pred.cpu() == test_labels.cpu().long()).float().mean().item()
