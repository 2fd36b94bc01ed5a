"""Augmentation pairs: two random views of one image are a positive pair (SimCLR, MoCo).

Two forms with the same view recipe (`ViewConfig`):

* `DeviceViewPairs` (batch-style): the dataset is one uint8 tensor ``(N, 3, H, W)`` moved once
  to the training device; each step makes both views of the whole batch with tensor ops.
* `ViewPairs` (map-style): torchvision transforms v2 in DataLoader workers, for any dataset and
  image size (PIL images or uint8 tensors).

``key_id`` is the image index, so the two views of an image (and an image's old keys in a MoCo
queue) are never each other's negatives.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from multicon.pairs.base import (
    BatchPairGenerator,
    MapPairGenerator,
    Pair,
    PairBatch,
    epoch_seed,
)
from multicon.pairs.views import (
    ViewConfig,
    apply_view_params,
    check_uint8_images,
    sample_view_params,
)


def _image_tensor(images: Any) -> torch.Tensor:
    """Accept an `ImageData` (from multicon.data) or a uint8 tensor ``(N, 3, H, W)``."""
    images = getattr(images, "images", images)
    check_uint8_images(images)
    if len(images) < 1:
        raise ValueError("the image dataset is empty")
    return images


class DeviceViewPairs(BatchPairGenerator):
    """Two random views per image, made on the device for the whole batch in one call.

    Args:
        images: uint8 ``(N, 3, H, W)`` tensor or an `ImageData`; moved to the training device
            on first use and kept there.
        query_views: view recipe of the query side.
        key_views: view recipe of the key side (defaults to ``query_views``; MoCo v3 uses an
            asymmetric pair from `moco_v3_views`).
        seed: base seed; batches are a pure function of ``(seed, epoch, rank, world_size)``.
        drop_last: drop the last incomplete global batch (keeps BatchNorm batches full).

    Example:
        >>> import torch
        >>> from multicon.pairs.views import SimCLRViews
        >>> imgs = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
        >>> pairs = DeviceViewPairs(imgs, SimCLRViews(size=32))
        >>> batch = next(pairs.batches(4, epoch=0, device="cpu"))
        >>> batch.query.shape, batch.key_id.tolist() == batch.key_id.tolist()
        (torch.Size([4, 3, 32, 32]), True)
    """

    def __init__(
        self,
        images: Any,
        query_views: ViewConfig,
        key_views: ViewConfig | None = None,
        *,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.images = _image_tensor(images)
        self.query_views = query_views
        self.key_views = key_views if key_views is not None else query_views
        self.seed = seed
        self.drop_last = drop_last

    def num_pairs(self) -> int:
        return len(self.images)

    def _on(self, device: torch.device | str) -> torch.Tensor:
        if self.images.device != torch.device(device):
            self.images = self.images.to(device)
        return self.images

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[PairBatch]:
        global_batch = batch_size * world_size
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if self.drop_last and global_batch > self.num_pairs():
            raise ValueError(
                f"global batch of {global_batch} images ({batch_size} x {world_size} processes) "
                f"is larger than the dataset of {self.num_pairs()} images: no full batch exists"
            )
        images = self._on(device)
        order_rng = self.rng(epoch)
        order = torch.randperm(self.num_pairs(), generator=order_rng)
        # Views of the whole global batch are drawn (parameters only: cheap) on every process
        # from the same device generator, and each process renders its slice, so N processes
        # train on exactly the pairs one process would.
        views_rng = torch.Generator(device=images.device)
        views_rng.manual_seed(epoch_seed(self.seed, epoch))
        h, w = images.shape[-2:]
        for chunk, mine in self.global_batches(order, batch_size, rank, world_size):
            idx = chunk[mine].to(images.device)
            mine_images = images[idx]
            views = []
            for cfg in (self.query_views, self.key_views):
                params = sample_view_params(
                    cfg, len(chunk), h, w, views_rng, images.device, order_rng
                )
                views.append(apply_view_params(mine_images, params.select(mine), cfg))
            yield PairBatch(views[0], views[1], idx)


class ViewPairs(MapPairGenerator):
    """Two random views per image from torchvision transforms v2, for DataLoader workers.

    Args:
        images: an `ImageData`, a uint8 tensor ``(N, 3, H, W)``, or any sequence/dataset whose
            items are images (PIL or uint8 ``(3, H, W)`` tensors) or ``(image, label)`` tuples
            (e.g. a torchvision dataset).
        query_views, key_views: view recipes as for `DeviceViewPairs`.

    Example:
        >>> import torch
        >>> from multicon.pairs.views import SimCLRViews
        >>> imgs = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
        >>> pairs = ViewPairs(imgs, SimCLRViews(size=32))
        >>> pairs.collate([pairs[0], pairs[1]]).query.shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(
        self,
        images: Any,
        query_views: ViewConfig,
        key_views: ViewConfig | None = None,
    ) -> None:
        source = getattr(images, "images", images)
        if isinstance(source, torch.Tensor):
            check_uint8_images(source)
        if not isinstance(source, Sequence | torch.Tensor) and not hasattr(source, "__getitem__"):
            raise TypeError(f"images must be indexable, got {type(source)!r}")
        if len(source) < 1:
            raise ValueError("the image dataset is empty")
        self.source = source
        self.query_views = query_views
        self.key_views = key_views if key_views is not None else query_views
        self.query_transform = self.query_views.cpu_transform()
        self.key_transform = (
            self.query_transform if key_views is None else self.key_views.cpu_transform()
        )

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> Pair:
        item = self.source[index]
        if isinstance(item, tuple):
            item = item[0]
        item = _as_rgb(item, index)
        return Pair(self.query_transform(item), self.key_transform(item), int(index))


#: PIL modes converted to RGB; others (16-bit, float) are refused rather than guessed at.
CONVERTIBLE_MODES = ("RGB", "L", "LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1")


def _as_rgb(item: Any, index: int) -> Any:
    if isinstance(item, torch.Tensor):
        if item.dtype != torch.uint8 or item.dim() != 3 or item.shape[0] != 3:
            raise ValueError(
                f"image {index} must be a uint8 (3, H, W) tensor, got dtype {item.dtype} "
                f"shape {tuple(item.shape)}"
            )
        return item
    mode = getattr(item, "mode", None)
    if mode is None:
        raise TypeError(f"image {index} is neither a PIL image nor a tensor: {type(item)!r}")
    if mode not in CONVERTIBLE_MODES:
        raise ValueError(
            f"image {index} has PIL mode {mode!r}, which has no faithful RGB conversion; "
            f"convert it to one of {CONVERTIBLE_MODES} first"
        )
    return item if mode == "RGB" else item.convert("RGB")
