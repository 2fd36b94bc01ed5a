"""The PNGs each recipe writes beside its model, one call per kind of run.

Every run gets ``training.png`` (loss, learning rate and throughput against the step, from
`TrainResult.history`); then, by kind:

* images (SimCLR, MoCo, the digits demo): ``knn_curve.png``, ``retrievals.png`` (test queries
  and their nearest training images) and ``embedding_map.png`` (the test set in 2-D);
* words (word2vec): ``word_neighbours.png`` (a table of chosen words' nearest words) and
  ``word_map.png`` (the most frequent words in 2-D);
* captions (CLIP): ``recall_table.png`` (R@1/5/10 both ways); the recipe also draws its retrieval
  examples (``top3_captions.png``).

Each function returns the file names it wrote (relative to the run folder), for the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from multicon.eval.plots import (
    plot_embedding_map,
    plot_knn_curve,
    plot_recall_table,
    plot_training_curves,
    plot_word_map,
    plot_word_neighbours,
    save_retrieval_grid,
)


def training_figure(out: str | Path, history: Sequence[dict], name: str, unit: str) -> list[str]:
    """``training.png``: loss, learning rate and ``unit``/s against the step."""
    plot_training_curves(history, Path(out) / "training.png", title=name, unit=unit)
    return ["training.png"]


def image_figures(
    out: str | Path,
    name: str,
    history: Sequence[dict],
    evaluations: Sequence[dict],
    train: Any,
    test: Any,
    train_features: torch.Tensor,
    test_features: torch.Tensor,
) -> list[str]:
    """The image runs' PNGs. ``evaluations``: the kNN records (``step``, ``knn_top1``), the
    random-init one first; ``train``/``test``: labelled images (``images``, ``labels``, optional
    ``classes``); the features are the trained backbone's."""
    out = Path(out)
    files = training_figure(out, history, name, "images")
    plot_knn_curve(evaluations, out / "knn_curve.png", title=f"{name}: kNN top-1 on the test set")
    save_retrieval_grid(train, test, train_features, test_features, out / "retrievals.png")
    plot_embedding_map(
        test_features,
        test.labels,
        out / "embedding_map.png",
        classes=getattr(test, "classes", None),
        title=name,
    )
    return files + ["knn_curve.png", "retrievals.png", "embedding_map.png"]


def pick_words(words: Sequence[str], chosen: Sequence[str] = (), count: int = 8) -> list[str]:
    """The words to show neighbours of: ``chosen`` (each must be in ``words``), else ``count``
    words spread over frequency ranks 20 to 1000 of ``words`` (most frequent first), past the
    function words at the top of a vocabulary.

    Example:
        >>> pick_words([f"w{i}" for i in range(2000)], count=3)
        ['w20', 'w346', 'w673']
        >>> pick_words(["a", "b", "c"], ["c"])
        ['c']
    """
    if chosen:
        known = set(words)
        missing = [w for w in chosen if w not in known]
        if missing:
            raise ValueError(f"--show_words: not in the vocabulary: {', '.join(missing)}")
        return list(chosen)
    if len(words) <= count:
        return list(words)
    start = min(20, len(words) // 4)
    stop = min(len(words), 1000)
    step = (stop - start) / count
    return [words[start + int(n * step)] for n in range(count)]


def word_figures(
    out: str | Path,
    history: Sequence[dict],
    vectors: torch.Tensor,
    words: Sequence[str],
    *,
    show_words: Sequence[str] = (),
    map_words: int = 120,
) -> list[str]:
    """The word2vec run's PNGs: ``words[i]`` names row ``i`` of ``vectors``, most frequent
    first; ``show_words``: the words whose neighbours are tabled (default: `pick_words`)."""
    out = Path(out)
    files = training_figure(out, history, "word2vec", "word pairs")
    queries = pick_words(words, show_words)
    title = f"word2vec: nearest words by cosine ({len(words):,}-word vocabulary)"
    plot_word_neighbours(vectors, words, queries, out / "word_neighbours.png", title=title)
    n = min(map_words, len(words))
    plot_word_map(vectors[:n], list(words[:n]), out / "word_map.png", title="word2vec")
    return files + ["word_neighbours.png", "word_map.png"]


def caption_figures(
    out: str | Path, history: Sequence[dict], recall: dict[str, float], name: str
) -> list[str]:
    """The caption run's PNGs: its training curves and its recall table."""
    out = Path(out)
    files = training_figure(out, history, name, "image-caption pairs")
    plot_recall_table(recall, out / "recall_table.png", title=f"{name}: test retrieval recall")
    return files + ["recall_table.png"]
