"""Input normalisation that fits the data: per-channel ``mean`` and ``std`` of pixel values.

`choose_normalization` picks, for ``--normalize``:

* ``auto`` (the default): the pretrained backbone's own statistics where it has some (torchvision
  weights' transforms, the image processor in an hf: folder, timm's ``pretrained_cfg``), else
  statistics of the training split;
* ``data``: statistics of the training split, always;
* ``pretrained``: the backbone's, or an error when it has none;
* ``imagenet`` or ``cifar10``: those datasets' published values;
* ``MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B``: these numbers.

Statistics of the data are computed once, over at most `STATS_SAMPLE` training images spread
evenly over the split (all of a smaller split): the mean and standard deviation of every pixel
value of each channel, on the 0–1 scale. The result is a dict ``{"mean": [r, g, b], "std":
[r, g, b], "source": "..."}`` that models save in their ``config.json`` under ``normalize``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from multicon.pairs.views import CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD

#: at most this many images of a caption corpus are decoded to compute its statistics
STATS_SAMPLE = 2000
NAMED = {"imagenet": (IMAGENET_MEAN, IMAGENET_STD), "cifar10": (CIFAR10_MEAN, CIFAR10_STD)}
NORMALIZE_HELP = (
    "Input normalisation: auto (the pretrained backbone's statistics, else the training "
    "split's), data, pretrained, imagenet, cifar10, or MEAN_R,MEAN_G,MEAN_B/STD_R,STD_G,STD_B."
)


def check_normalize(flag: str) -> None:
    """Raise ValueError for a ``--normalize`` value that is none of the accepted forms."""
    if flag in ("auto", "data", "pretrained", *NAMED):
        return
    _explicit(flag)


def _explicit(flag: str) -> dict[str, Any]:
    parts = flag.split("/")
    try:
        mean, std = ([float(v) for v in part.split(",")] for part in parts)
    except ValueError:  # not numbers, or not two parts
        mean, std = (), ()
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ValueError(
            f"--normalize {flag!r}: give auto, data, pretrained, {', '.join(NAMED)}, or three "
            "means and three positive stds as R,G,B/R,G,B"
        )
    return {"mean": mean, "std": std, "source": "--normalize"}


def choose_normalization(
    flag: str,
    pretrained: dict[str, Any] | None,
    data_stats: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """The ``{"mean", "std", "source"}`` that ``flag`` picks; ``data_stats`` runs only when
    the data's statistics are needed.

    Example:
        >>> choose_normalization("imagenet", None, lambda: {})["mean"]
        [0.485, 0.456, 0.406]
        >>> choose_normalization("0.5,0.5,0.5/0.25,0.25,0.25", None, lambda: {})["std"]
        [0.25, 0.25, 0.25]
        >>> choose_normalization("auto", None, lambda: {"mean": [0.1] * 3, "std": [0.2] * 3,
        ...                                             "source": "data"})["source"]
        'data'
    """
    check_normalize(flag)
    if flag in NAMED:
        mean, std = NAMED[flag]
        return {"mean": list(mean), "std": list(std), "source": flag}
    if flag == "pretrained":
        if pretrained is None:
            raise ValueError(
                "--normalize pretrained: this backbone has no pretrained statistics (it starts "
                "from a random initialisation, or its folder has no image processor config); "
                "use auto or data"
            )
        return dict(pretrained)
    if flag == "auto" and pretrained is not None:
        return dict(pretrained)
    if flag in ("auto", "data"):
        return data_stats()
    return _explicit(flag)


class _Moments:
    """Running per-channel sums of pixel values and their squares (float64)."""

    def __init__(self) -> None:
        self.total = torch.zeros(3, dtype=torch.float64)
        self.squares = torch.zeros(3, dtype=torch.float64)
        self.count = 0

    def add(self, pixels: torch.Tensor) -> None:
        """``pixels``: ``(N, 3, H, W)`` values on the 0–1 scale."""
        x = pixels.to(torch.float64).transpose(0, 1).reshape(3, -1)
        self.total += x.sum(dim=1)
        self.squares += (x * x).sum(dim=1)
        self.count += x.shape[1]

    def result(self, source: str) -> dict[str, Any]:
        if self.count == 0:
            raise ValueError(f"no images to compute normalisation statistics from ({source})")
        mean = self.total / self.count
        std = (self.squares / self.count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
        return {
            "mean": [round(float(v), 6) for v in mean],
            "std": [round(float(v), 6) for v in std],
            "source": source,
        }


def sample_indices(n: int, max_images: int = STATS_SAMPLE) -> list[int]:
    """At most ``max_images`` indices spread evenly over ``range(n)`` (all of them if fewer).

    Example:
        >>> sample_indices(10, 4), sample_indices(3, 4)
        ([0, 3, 6, 9], [0, 1, 2])
    """
    if n <= max_images:
        return list(range(n))
    return torch.linspace(0, n - 1, max_images).round().long().tolist()


def tensor_stats(images: torch.Tensor, max_images: int | None = None, name: str = "") -> dict:
    """Exact per-channel statistics of uint8 images ``(N, 3, H, W)`` (an `ImageData`'s
    ``images``, already in memory): all of them, or ``max_images`` spread evenly.

    Counted as one histogram of the 256 values per channel, so every image costs little.

    Example:
        >>> imgs = torch.zeros(4, 3, 2, 2, dtype=torch.uint8); imgs[:, 0] = 255
        >>> s = tensor_stats(imgs)
        >>> s["mean"], s["std"][1], s["source"]
        ([1.0, 0.0, 0.0], 1e-06, 'training split (all 4 images)')
    """
    if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        raise ValueError(
            f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    n = len(images)
    index = sample_indices(n, max_images) if max_images is not None else range(n)
    counts = torch.zeros(3 * 256, dtype=torch.float64)
    offsets = torch.arange(3).view(1, 3, 1, 1) * 256  # channel c counts in bins 256c..256c+255
    for start in range(0, len(index), 1024):
        part = index[start : start + 1024]
        chunk = images[part.start : part.stop] if isinstance(part, range) else images[part]
        counts += torch.bincount((chunk.long() + offsets).reshape(-1), minlength=3 * 256)
    counts = counts.view(3, 256)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    moments = _Moments()
    moments.total, moments.squares = counts @ values, counts @ (values * values)
    moments.count = int(counts[0].sum())
    return moments.result(_source(name, len(index), n))


def pil_stats(images: Iterable, transform, total: int, name: str = "") -> dict:
    """Per-channel statistics of PIL images after ``transform`` (to a float ``(3, H, W)``
    tensor on the 0–1 scale, e.g. the model's resize and crop); ``total``: the split's size,
    for the record."""
    moments, seen = _Moments(), 0
    for image in images:
        moments.add(transform(image.convert("RGB")).unsqueeze(0))
        seen += 1
    return moments.result(_source(name, seen, total))


def corpus_stats(corpus, image_size: int, max_images: int = STATS_SAMPLE) -> dict:
    """Per-channel statistics of a caption corpus's training images at ``image_size`` (resized
    and centre-cropped as the model sees them): evenly spread images of a map-style corpus, the
    first ones of a streamed one (`CaptionShardStream`)."""
    from torchvision.transforms import v2

    transform = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(image_size, antialias=True),
            v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True),
        ]
    )
    if hasattr(corpus, "image"):  # map-style: read evenly spread images
        index = sample_indices(len(corpus), max_images)
        return pil_stats((corpus.image(i) for i in index), transform, len(corpus))
    return pil_stats(_stream_images(corpus, max_images), transform, len(corpus), "first")


def _stream_images(stream, max_images: int):
    """The first ``max_images`` decodable images of a `CaptionShardStream`."""
    import io

    from PIL import Image

    taken = 0
    for _, _, sample in stream.samples(range(len(stream.shards))):
        found = sample.image()
        if found is None:
            continue
        try:
            image = Image.open(io.BytesIO(found[1]))
            image.load()
        except OSError:
            continue  # the stream skips and counts it when training
        yield image
        taken += 1
        if taken >= max_images:
            return


def _source(name: str, used: int, total: int) -> str:
    if used == total:
        return f"training split (all {total} images)"
    which = "the first" if name == "first" else "evenly spread"
    return f"training split ({used} of {total} images, {which})"
