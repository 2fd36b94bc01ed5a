"""Frozen features of an image dataset, and the kNN monitor that recipes run during training."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multicon.eval.knn import knn_accuracy
from multicon.pairs.views import ViewConfig, check_uint8_images, eval_transform
from multicon.progress import progress as progress_bar


def _images_and_labels(data: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    images = getattr(data, "images", data)
    check_uint8_images(images)
    return images, getattr(data, "labels", None)


def _feature_fn(encoder: nn.Module):
    return encoder.features if hasattr(encoder, "features") else encoder


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    data: Any,
    views: ViewConfig,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    autocast: bool = True,
    progress: bool = False,
    desc: str = "features",
) -> torch.Tensor:
    """Backbone features ``(N, F)`` (float32, on ``device``) of uint8 images, in eval mode.

    Images are resized to ``views.size`` if needed and normalised with ``views.mean/std``; the
    encoder's ``features`` method is used when it has one (an `ImageEncoder`), else its output.
    On CUDA the forward runs under bf16 autocast unless ``autocast=False``. ``progress``: a
    tqdm bar (named ``desc``, main process only) counting images.

    Example:
        >>> import torch
        >>> from multicon.encoders import ImageEncoder
        >>> from multicon.pairs.views import SimCLRViews
        >>> enc = ImageEncoder("resnet18", head_hidden_dim=32, out_dim=8)
        >>> imgs = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
        >>> extract_features(enc, imgs, SimCLRViews(size=16), batch_size=2).shape
        torch.Size([5, 512])
    """
    images, _ = _images_and_labels(data)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    was_training = encoder.training
    encoder.eval()
    forward = _feature_fn(encoder)
    use_amp = autocast and device.type == "cuda"
    out = []
    bar = progress_bar(enabled=progress, total=len(images), desc=desc, unit="img")
    try:
        for chunk in images.split(batch_size):
            x = eval_transform(chunk.to(device, non_blocking=True), views)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out.append(forward(x).float())
            bar.update(len(chunk))
    finally:
        bar.close()
        encoder.train(was_training)
    return torch.cat(out)


class KNNMonitor:
    """``monitor(model) -> {"knn_top1": ...}``: weighted kNN (k=200, τ=0.1) of backbone features.

    Train features (the memory bank) and test features are recomputed at each call from the
    model's query encoder, as InstDisc and lightly's benchmarks do. Pass it as the trainer's
    ``evaluate``.

    Args:
        train, test: labelled `ImageData` (or objects with ``images`` and ``labels``).
        views: gives the evaluation size and normalisation.
        k, temperature: the weighted kNN's neighbours and temperature.
        max_train: use at most this many training images as the memory bank (0: all).
        progress: tqdm bars while features are extracted (main process only).

    Example:
        >>> import torch
        >>> from multicon.data import ImageData
        >>> from multicon.encoders import ImageEncoder
        >>> from multicon.pairs.views import SimCLRViews
        >>> data = ImageData(torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8),
        ...                  torch.arange(8) % 2)
        >>> monitor = KNNMonitor(data, data, SimCLRViews(size=16), k=3)
        >>> 0.0 <= monitor(ImageEncoder("resnet18", head_hidden_dim=32, out_dim=8))["knn_top1"]
        True
    """

    def __init__(
        self,
        train: Any,
        test: Any,
        views: ViewConfig,
        *,
        k: int = 200,
        temperature: float = 0.1,
        max_train: int = 0,
        batch_size: int = 512,
        progress: bool = False,
    ) -> None:
        self.train_images, self.train_labels = _labelled(train, "the kNN monitor (train split)")
        self.test_images, self.test_labels = _labelled(test, "the kNN monitor (test split)")
        if max_train and max_train < len(self.train_images):
            keep = torch.randperm(
                len(self.train_images), generator=torch.Generator().manual_seed(0)
            )
            keep = keep[:max_train]
            self.train_images, self.train_labels = self.train_images[keep], self.train_labels[keep]
        self.views, self.k, self.temperature = views, k, temperature
        self.batch_size = batch_size
        self.progress = progress

    def features(self, encoder: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """Train and test features of ``encoder`` (the trained image encoder)."""
        kwargs = dict(views=self.views, batch_size=self.batch_size, progress=self.progress)
        train = extract_features(encoder, self.train_images, desc="kNN bank features", **kwargs)
        test = extract_features(encoder, self.test_images, desc="kNN test features", **kwargs)
        return train, test

    def __call__(self, encoder: nn.Module) -> dict[str, float]:
        train, test = self.features(encoder)
        acc = knn_accuracy(
            train, self.train_labels, test, self.test_labels, k=self.k, temperature=self.temperature
        )
        return {"knn_top1": acc}


def _labelled(data: Any, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = _images_and_labels(data)
    if labels is None:
        raise ValueError(
            f"{purpose} needs class labels, but the dataset has none; load a labelled split"
        )
    if len(labels) != len(images):
        raise ValueError(f"{purpose}: {len(images)} images but {len(labels)} labels")
    return images, torch.as_tensor(labels, dtype=torch.long)
