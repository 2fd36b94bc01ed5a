"""scikit-learn's bundled handwritten digits: 1,797 real 8×8 scans, no download needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ImageSplit:
    """Images ``(N, C, H, W)`` as float in [0, 1] and integer labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """The digits as a stratified train / held-out split of float images in [0, 1].

    Example:
        >>> train, test = load_digits()
        >>> train.images.shape, test.images.shape
        (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]))
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(bunch.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique():  # stratified: the same fraction of every class is held out
        members = (labels == c).nonzero().squeeze(1)
        members = members[torch.randperm(len(members), generator=g)]
        test_mask[members[: round(len(members) * test_fraction)]] = True
    return (
        ImageSplit(images[~test_mask], labels[~test_mask]),
        ImageSplit(images[test_mask], labels[test_mask]),
    )
