"""Pictures a run leaves beside its checkpoint: the kNN curve and nearest-neighbour retrievals."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F


def plot_knn_curve(
    evaluations: Sequence[dict[str, float]],
    path: str | Path,
    *,
    metric: str = "knn_top1",
    title: str = "kNN top-1 during training",
) -> Path:
    """Save a PNG of ``metric`` against epoch from the trainer's evaluation records.

    Example:
        >>> import tempfile, os
        >>> curve = [{"epoch": 1, "knn_top1": 0.3}, {"epoch": 2, "knn_top1": 0.5}]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_knn_curve(curve, os.path.join(folder, "knn.png"))
        ...     out.stat().st_size > 0
        True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(e["epoch"], e[metric]) for e in evaluations if metric in e]
    if not points:
        raise ValueError(f"no evaluation record has {metric!r}; was the kNN monitor run?")
    epochs, values = zip(*points, strict=True)
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(epochs, [100 * v for v in values], marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def retrieval_grid(
    train_features: torch.Tensor,
    test_features: torch.Tensor,
    *,
    queries: int = 8,
    neighbours: int = 8,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ``queries`` test items (seeded) and their ``neighbours`` nearest train items (cosine).

    Returns ``(query_index (Q,), neighbour_index (Q, K))``.
    """
    g = torch.Generator().manual_seed(seed)
    q_idx = torch.randperm(len(test_features), generator=g)[:queries]
    q = F.normalize(test_features[q_idx].float(), dim=1)
    bank = F.normalize(train_features.float().to(q.device), dim=1)
    nn_idx = (q @ bank.T).topk(min(neighbours, len(bank)), dim=1).indices
    return q_idx.cpu(), nn_idx.cpu()


def save_retrieval_grid(
    train: Any,
    test: Any,
    train_features: torch.Tensor,
    test_features: torch.Tensor,
    path: str | Path,
    *,
    queries: int = 8,
    neighbours: int = 8,
    seed: int = 0,
) -> Path:
    """Save a PNG grid: each row a test image, then its nearest training images.

    Neighbours of the query's class are framed green, others red (when labels are known).
    ``train``/``test`` are `ImageData` (or anything with uint8 ``images`` and ``labels``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q_idx, nn_idx = retrieval_grid(
        train_features, test_features, queries=queries, neighbours=neighbours, seed=seed
    )
    train_labels, test_labels = getattr(train, "labels", None), getattr(test, "labels", None)
    classes = getattr(train, "classes", None)
    rows, cols = len(q_idx), 1 + nn_idx.shape[1]
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.15 * rows), dpi=100, squeeze=False)
    for r, qi in enumerate(q_idx.tolist()):
        cells = [(test.images[qi], None)] + [(train.images[j], j) for j in nn_idx[r].tolist()]
        for c, (img, j) in enumerate(cells):
            ax = axes[r][c]
            ax.imshow(img.permute(1, 2, 0).cpu().numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if j is None:
                if test_labels is not None:
                    label = int(test_labels[qi])
                    ax.set_title(classes[label] if classes else str(label), fontsize=7)
                for spine in ax.spines.values():
                    spine.set_color("black")
                    spine.set_linewidth(2)
            elif train_labels is not None and test_labels is not None:
                same = int(train_labels[j]) == int(test_labels[qi])
                for spine in ax.spines.values():
                    spine.set_color("tab:green" if same else "tab:red")
                    spine.set_linewidth(2)
    axes[0][0].set_ylabel("query", fontsize=7)
    fig.suptitle("nearest training images of test queries (green: same class)", fontsize=8)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
