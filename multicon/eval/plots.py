"""Pictures a run leaves beside its checkpoint: training curves, the kNN curve, nearest
neighbours (images, words), 2-D maps of the learned features and the retrieval recall table.

Each function draws one PNG with matplotlib's Agg backend (no display needed) and returns its
path; `multicon.eval.run_figures` picks the set each recipe writes.
"""

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
    """Save a PNG of ``metric`` (in %) at each evaluation, against the training step.

    Records are the trainer's evaluations (``{"step": ..., "epoch": ..., metric: ...}``); a
    point per record, so a run shorter than an epoch still shows its start and end. Records
    without a ``step`` are placed by ``epoch``.

    Example:
        >>> import tempfile, os
        >>> curve = [{"step": 0, "knn_top1": 0.3}, {"step": 40, "knn_top1": 0.5}]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_knn_curve(curve, os.path.join(folder, "knn.png"))
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    records = [e for e in evaluations if metric in e]
    if not records:
        raise ValueError(f"no evaluation record has {metric!r}; was the kNN monitor run?")
    by_step = all("step" in e for e in records)
    xs = [e["step"] if by_step else e["epoch"] for e in records]
    values = [100 * e[metric] for e in records]
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    ax.plot(xs, values, marker="o")
    if len(records) <= 12:  # few points: write each value beside it
        for x, v in zip(xs, values, strict=True):
            ax.annotate(f"{v:.1f}", (x, v), textcoords="offset points", xytext=(0, 6),
                        ha="center", fontsize=8)  # fmt: skip
    ax.set_xlabel(f"training {'step' if by_step else 'epoch'} (0: random initialisation)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("kNN top-1 accuracy (%)" if metric == "knn_top1" else f"{metric} (%)")
    ax.set_title(title, fontsize=10)
    ax.margins(x=0.08, y=0.2)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_training_curves(
    history: Sequence[dict[str, float]],
    path: str | Path,
    *,
    title: str = "training",
    unit: str = "samples",
) -> Path:
    """Save a PNG of the loss, the learning rate and the throughput against the training step.

    ``history`` is `TrainResult.history`: one record per logged step (``step``, ``loss``,
    ``lr``, ``samples_per_s``); evaluation records in it are ignored. ``unit`` names what a
    sample is in the throughput panel's label (``"images"``, ``"word pairs"``).

    Example:
        >>> import tempfile, os
        >>> history = [{"step": s, "loss": 2 / s, "lr": 0.1, "samples_per_s": 900.0}
        ...            for s in (10, 20, 30)]
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_training_curves(history, os.path.join(folder, "training.png"))
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    logged = [h for h in history if "loss" in h and "step" in h]
    if not logged:
        raise ValueError("the history has no logged training step (no record with a loss)")
    steps = [h["step"] for h in logged]
    panels = [
        ("loss", "loss", "loss"),
        ("lr", "learning rate", "learning rate"),
        ("samples_per_s", f"{unit} / s", "throughput"),
    ]
    marker = "o" if len(logged) <= 30 else None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4), dpi=100)
    for ax, (key, ylabel, name) in zip(axes, panels, strict=True):
        points = [(s, h[key]) for s, h in zip(steps, logged, strict=True) if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker=marker, markersize=3)
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fig.suptitle(f"{title} ({len(logged)} logged steps of {steps[-1]})", fontsize=11)
    return _save(fig, path)


def pca_2d(features: torch.Tensor) -> tuple[torch.Tensor, tuple[float, float]]:
    """The first two principal components of ``features`` ``(N, D)`` and the share of the
    variance each explains.

    Example:
        >>> x = torch.tensor([[0.0, 0.0], [2.0, 0.1], [4.0, -0.1]])
        >>> points, (first, second) = pca_2d(x)
        >>> points.shape, first > 0.99
        (torch.Size([3, 2]), True)
    """
    x = features.double()
    x = x - x.mean(0)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    variance = s.square()
    total = float(variance.sum()) or 1.0
    shares = [float(v) / total for v in variance[:2]] + [0.0, 0.0]
    points = x @ vh[:2].T
    if points.shape[1] < 2:  # one feature dimension: a flat second axis
        points = torch.cat([points, torch.zeros(len(points), 2 - points.shape[1])], 1)
    return points.float(), (shares[0], shares[1])


def plot_embedding_map(
    features: torch.Tensor,
    labels: torch.Tensor | Sequence[int],
    path: str | Path,
    *,
    classes: Sequence[str] | None = None,
    title: str = "test set",
) -> Path:
    """Save a 2-D map (PCA of the L2-normalised features, the geometry kNN uses) of
    ``features`` ``(N, D)``, one colour per label.

    Example:
        >>> import tempfile, os
        >>> feats, labels = torch.randn(30, 8), torch.arange(30) % 3
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_embedding_map(feats, labels, os.path.join(folder, "map.png"))
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    labels = torch.as_tensor(labels).long().cpu()
    if len(labels) != len(features):
        raise ValueError(f"{len(features)} features but {len(labels)} labels")
    points, (first, second) = pca_2d(F.normalize(features.float().cpu(), dim=1))
    present = labels.unique().tolist()
    cmap = plt.get_cmap("tab10" if len(present) <= 10 else "tab20")
    fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100)
    size = 6 if len(points) > 2000 else 14
    for n, label in enumerate(present):
        at = labels == label
        name = classes[label] if classes and label < len(classes) else str(label)
        ax.scatter(points[at, 0], points[at, 1], s=size, color=cmap(n % cmap.N), label=name,
                   alpha=0.7, linewidths=0)  # fmt: skip
    if len(present) <= 20:
        ax.legend(fontsize=7, markerscale=1.5, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  title="label", title_fontsize=8)  # fmt: skip
    ax.set_xlabel(f"PC 1 ({100 * first:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * second:.0f}% of variance)")
    ax.set_title(f"{title}: PCA of {len(points)} test features", fontsize=10)
    ax.grid(alpha=0.2)
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
    ``train``/``test`` are `ImageData` (or anything with ``images`` ``(N, C, H, W)``, uint8 or
    float in [0, 1], C 1 or 3, and ``labels``).
    """
    plt = _pyplot()

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
            _show_image(ax, img)
            ax.set_xticks([])
            ax.set_yticks([])
            if j is None:
                if test_labels is not None:
                    label = int(test_labels[qi])
                    ax.set_title(classes[label] if classes else str(label), fontsize=7)
                for spine in ax.spines.values():
                    spine.set_color("black")
                    spine.set_linewidth(2)
            elif r == 0:
                ax.set_title(f"nn {c}", fontsize=7)
            if j is not None and train_labels is not None and test_labels is not None:
                same = int(train_labels[j]) == int(test_labels[qi])
                for spine in ax.spines.values():
                    spine.set_color("tab:green" if same else "tab:red")
                    spine.set_linewidth(2)
    axes[0][0].set_ylabel("query", fontsize=7)
    fig.suptitle("nearest training images of test queries (green: same class)", fontsize=8)
    return _save(fig, path)


def plot_recall_table(
    recall: dict[str, float], path: str | Path, *, title: str = "test retrieval"
) -> Path:
    """Save the image–text retrieval recall (``image_to_text/R@K``, ``text_to_image/R@K`` in
    %, as `multicon.eval.retrieval.retrieval_recall` gives) as a table image.

    Example:
        >>> import tempfile, os
        >>> recall = {f"{d}/R@{k}": 10.0 * k for d in ("image_to_text", "text_to_image")
        ...           for k in (1, 5, 10)}
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_recall_table(recall, os.path.join(folder, "recall.png"))
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    ks = sorted({int(k.rsplit("@", 1)[1]) for k in recall if "/R@" in k})
    directions = [d for d in ("image_to_text", "text_to_image") if f"{d}/R@{ks[0]}" in recall]
    if not ks or not directions:
        raise ValueError(f"no image_to_text/R@K or text_to_image/R@K in {sorted(recall)}")
    cells = [[f"{recall[f'{d}/R@{k}']:.1f}" for k in ks] for d in directions]
    rows = ["image → text" if d == "image_to_text" else "text → image" for d in directions]
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(ks), 0.8 + 0.45 * len(rows)), dpi=110)
    ax.axis("off")
    table = ax.table(cellText=cells, rowLabels=rows, colLabels=[f"R@{k} (%)" for k in ks],
                     loc="center", cellLoc="center")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.5)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_word_neighbours(
    vectors: torch.Tensor,
    words: Sequence[str],
    queries: Sequence[str],
    path: str | Path,
    *,
    k: int = 6,
    title: str = "nearest words by cosine",
) -> Path:
    """Save a table image: each query word, then its ``k`` nearest words (cosine, shown).

    ``words[i]`` names row ``i`` of ``vectors``; a query not among ``words`` is a ValueError.

    Example:
        >>> import tempfile, os
        >>> vecs = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_word_neighbours(vecs, ["a", "b", "c"], ["a"], os.path.join(folder,
        ...                                "nn.png"), k=2)
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    index = {w: i for i, w in enumerate(words)}
    missing = [q for q in queries if q not in index]
    if missing or not queries:
        raise ValueError(f"words not in the vocabulary: {missing}" if missing else "no words")
    unit = F.normalize(vectors.float(), dim=1)
    k = min(k, len(words) - 1)
    rows = []
    for q in queries:
        sims = unit @ unit[index[q]]
        sims[index[q]] = float("-inf")
        top = sims.topk(k)
        rows.append(
            [
                f"{words[i]} ({s:.2f})"
                for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ]
        )
    width = max(len(c) for row in rows for c in row)
    fig, ax = plt.subplots(
        figsize=(1.2 + k * (0.3 + 0.075 * width), 0.7 + 0.3 * len(rows)), dpi=110
    )
    ax.axis("off")
    table = ax.table(cellText=rows, rowLabels=list(queries),
                     colLabels=[f"#{n + 1}" for n in range(k)], loc="center",
                     cellLoc="left")  # fmt: skip
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.3)
    for (r, c), cell in table.get_celld().items():
        if r == 0 or c == -1:
            cell.set_text_props(fontweight="bold")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_word_map(
    vectors: torch.Tensor,
    words: Sequence[str],
    path: str | Path,
    *,
    title: str = "frequent words",
) -> Path:
    """Save a labelled 2-D map (PCA of the unit vectors) of ``vectors`` ``(N, D)``, each point
    named by ``words[i]``; pass the most frequent words (a vocabulary's first rows).

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     out = plot_word_map(torch.randn(5, 4), list("abcde"), os.path.join(folder,
        ...                         "words.png"))
        ...     out.stat().st_size > 0
        True
    """
    plt = _pyplot()
    if len(words) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(words)} words")
    points, (first, second) = pca_2d(F.normalize(vectors.float().cpu(), dim=1))
    fig, ax = plt.subplots(figsize=(9, 7), dpi=100)
    ax.scatter(points[:, 0], points[:, 1], s=8, color="tab:blue", alpha=0.6)
    for (x, y), word in zip(points.tolist(), words, strict=True):
        ax.annotate(word, (x, y), fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel(f"PC 1 ({100 * first:.0f}% of variance)")
    ax.set_ylabel(f"PC 2 ({100 * second:.0f}% of variance)")
    ax.set_title(f"{title}: PCA of the {len(words)} most frequent words' vectors", fontsize=10)
    ax.grid(alpha=0.2)
    return _save(fig, path)


def _show_image(ax, img: torch.Tensor) -> None:
    """Draw a ``(C, H, W)`` uint8 or [0, 1] float image; one channel in grey."""
    img = img.detach().cpu()
    if img.shape[0] == 1:
        ax.imshow(img[0].float().numpy(), cmap="gray_r" if img.is_floating_point() else "gray")
    else:
        ax.imshow(img.permute(1, 2, 0).numpy())


def _pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    """Lay out, write and close a figure; returns its path."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
