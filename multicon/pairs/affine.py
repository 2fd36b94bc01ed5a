"""Two random affine views of one small image, made for the whole batch on the device."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from multicon.pairs.base import BatchPairGenerator, PairBatch


def random_affine_params(
    n: int,
    generator: torch.Generator,
    *,
    max_rotation: float = 15.0,
    scale: tuple[float, float] = (0.85, 1.15),
    max_translation: float = 0.15,
) -> torch.Tensor:
    """``(n, 2, 3)`` affine matrices: a random rotation (degrees in ``±max_rotation``), zoom in
    ``scale`` and shift (fraction of the image size in ``±max_translation``) each."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    angle = uniform(-max_rotation, max_rotation) * math.pi / 180
    zoom = uniform(*scale)
    tx, ty = uniform(-max_translation, max_translation), uniform(-max_translation, max_translation)
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    return torch.stack([torch.stack([cos, -sin, 2 * tx], 1), torch.stack([sin, cos, 2 * ty], 1)], 1)


def apply_affine(
    images: torch.Tensor, theta: torch.Tensor, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """Warp ``(B, C, H, W)`` images by ``(B, 2, 3)`` matrices in one ``grid_sample`` call and add
    ``noise`` (same shape as the images) if given."""
    theta = theta.to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    views = F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)
    return views if noise is None else views + noise.to(views.device, views.dtype)


class AffineViewPairs(BatchPairGenerator):
    """Batch-style pairs: two random affine views of each image (query and key), id = index.

    For small single-object images (digits, glyphs) held as one float tensor on the device.

    Args:
        images: ``(N, C, H, W)`` float tensor.
        seed: seeds the order and the views; every process draws the same global batch.
        noise: standard deviation of Gaussian noise added to each view.
        **view_args: forwarded to `random_affine_params`.

    Example:
        >>> import torch
        >>> pairs = AffineViewPairs(torch.rand(10, 1, 8, 8))
        >>> batch = next(pairs.batches(4, epoch=0, device="cpu"))
        >>> batch.query.shape, batch.key_id.tolist() == batch.key_id.tolist()
        (torch.Size([4, 1, 8, 8]), True)
    """

    def __init__(
        self, images: torch.Tensor, *, seed: int = 0, noise: float = 0.1, **view_args
    ) -> None:
        if images.dim() != 4 or not images.is_floating_point():
            raise ValueError(
                f"images must be a float tensor (N, C, H, W), got {images.dtype} "
                f"of shape {tuple(images.shape)}"
            )
        if len(images) == 0:
            raise ValueError("AffineViewPairs got no images")
        self.images, self.seed, self.noise, self.view_args = images, seed, noise, view_args

    def num_pairs(self) -> int:
        return len(self.images)

    def batches(
        self, batch_size: int, *, epoch: int, device, rank: int = 0, world_size: int = 1
    ) -> Iterator[PairBatch]:
        g = self.rng(epoch)
        order = torch.randperm(len(self.images), generator=g)
        images = self.images.to(device)
        shape = images.shape[1:]
        for chunk, mine in self.global_batches(order, batch_size, rank, world_size):
            # Draw every view of the global batch and keep this rank's slice, so that N
            # processes train on exactly the pairs one process would.
            views = []
            for _ in range(2):
                theta = random_affine_params(len(chunk), g, **self.view_args)[mine]
                eps = torch.randn((len(chunk), *shape), generator=g)[mine] * self.noise
                views.append(apply_affine(images[chunk[mine].to(device)], theta, eps))
            yield PairBatch(views[0], views[1], chunk[mine].to(device))
