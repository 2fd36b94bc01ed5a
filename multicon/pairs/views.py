"""Random image views made for a whole batch at once, on whatever device holds the images.

Two random views of one image are a positive pair (SimCLR, MoCo). This module makes them with
tensor ops for the whole batch in one call, so a uint8 dataset held on the GPU needs no CPU
workers: random resized crop + horizontal flip as one affine grid per image (one `grid_sample`),
then colour jitter, grayscale, Gaussian blur, solarize and normalisation as batched arithmetic
with per-image random factors.

The parameters are drawn by `sample_view_params` and applied by `apply_view_params`, so tests
and users can inspect exactly what was drawn. The CPU twin (`ViewConfig.cpu_transform`) builds
the torchvision transforms v2 pipeline with the same ranges.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Image sizes from which the presets add Gaussian blur (SimCLR drops it for 32×32 CIFAR).
BLUR_MIN_SIZE = 64


@dataclass
class ViewConfig:
    """The random view recipe: parameter ranges and probabilities.

    Order of operations (as SimCLR/MoCo): random resized crop → horizontal flip → colour jitter
    (with probability ``jitter_p``; brightness, contrast, saturation, hue in a random order)
    → grayscale → Gaussian blur → solarize → normalise.

    Args:
        size: output side length (square views).
        scale: range of the crop's area as a fraction of the image area.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        flip_p: probability of a horizontal flip.
        brightness, contrast, saturation: jitter strengths ``s``; factors drawn from
            ``[1 - s, 1 + s]``.
        hue: hue shift drawn from ``[-hue, hue]`` (fraction of the colour wheel, ≤ 0.5).
        jitter_p: probability of applying colour jitter to an image.
        grayscale_p: probability of converting to grayscale.
        blur_p: probability of Gaussian blur; ``None`` picks 0.5 from `BLUR_MIN_SIZE` px up,
            else 0 (SimCLR and MoCo use no blur on 32×32 CIFAR).
        blur_sigma: range of the blur's standard deviation, in pixels of the output view.
        blur_kernel_fraction: kernel side as a fraction of ``size`` (10% in SimCLR), made odd.
        solarize_p: probability of solarizing (inverting intensities ≥ 0.5; BYOL/MoCo v3).
        mean, std: per-channel normalisation applied last.

    Example:
        >>> cfg = SimCLRViews(size=32)
        >>> cfg.scale, cfg.blur_p
        ((0.08, 1.0), 0.0)
        >>> MoCoV2Views(size=224).blur_p
        0.5
    """

    size: int = 32
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float | None = None
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1
    solarize_p: float = 0.0
    mean: tuple[float, float, float] = CIFAR10_MEAN
    std: tuple[float, float, float] = CIFAR10_STD

    def __post_init__(self) -> None:
        self.scale, self.ratio = tuple(self.scale), tuple(self.ratio)
        self.blur_sigma = tuple(self.blur_sigma)
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if self.blur_p is None:
            self.blur_p = 0.5 if self.size >= BLUR_MIN_SIZE else 0.0
        if self.size < 1:
            raise ValueError(f"view size must be positive, got {self.size}")
        for name in ("scale", "ratio", "blur_sigma"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {(lo, hi)}")
        if self.scale[1] > 1:
            raise ValueError(f"scale is a fraction of the image area, at most 1, got {self.scale}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} strength must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 channels, std > 0: {self.mean}, {self.std}")

    @property
    def blur_kernel_size(self) -> int:
        k = max(3, int(round(self.blur_kernel_fraction * self.size)))
        return k if k % 2 == 1 else k + 1

    def to_dict(self) -> dict:
        """JSON-able form (for configs and model cards)."""
        return asdict(self)

    def cpu_transform(self):
        """The torchvision transforms v2 pipeline with the same ranges, for DataLoader workers.

        Takes a PIL image or a uint8 ``(3, H, W)`` tensor, returns a normalised float tensor.
        """
        from torchvision.transforms import v2

        ops = [
            v2.ToImage(),
            v2.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio, antialias=True),
            v2.RandomHorizontalFlip(self.flip_p),
            v2.RandomApply(
                [v2.ColorJitter(self.brightness, self.contrast, self.saturation, self.hue)],
                p=self.jitter_p,
            ),
            v2.RandomGrayscale(self.grayscale_p),
        ]
        if self.blur_p > 0:
            blur = v2.GaussianBlur(self.blur_kernel_size, sigma=self.blur_sigma)
            ops.append(v2.RandomApply([blur], p=self.blur_p))
        ops.append(v2.ToDtype(torch.float32, scale=True))
        if self.solarize_p > 0:
            ops.append(v2.RandomSolarize(threshold=0.5, p=self.solarize_p))
        ops.append(v2.Normalize(self.mean, self.std))
        return v2.Compose(ops)


@dataclass
class SimCLRViews(ViewConfig):
    """SimCLR's views (Chen et al. 2020): crop scale 0.08–1, jitter 0.4/0.4/0.4/0.1 p 0.8."""


@dataclass
class MoCoV2Views(ViewConfig):
    """MoCo v2's views (Chen et al. 2020b): as SimCLR but crop scale 0.2–1."""

    scale: tuple[float, float] = (0.2, 1.0)


def moco_v3_views(size: int = 32, **overrides) -> tuple[ViewConfig, ViewConfig]:
    """MoCo v3 / BYOL's asymmetric pair: view 1 always blurred, view 2 rarely, and solarized.

    On images smaller than `BLUR_MIN_SIZE` the blur is left out, as for the other presets.
    """
    big = size >= BLUR_MIN_SIZE
    common = dict(size=size, scale=(0.08, 1.0), **overrides)
    first = ViewConfig(blur_p=1.0 if big else 0.0, solarize_p=0.0, **common)
    second = ViewConfig(blur_p=0.1 if big else 0.0, solarize_p=0.2, **common)
    return first, second


@dataclass
class ViewParams:
    """Everything drawn for one batch of views (per image), in output-pixel terms.

    ``crop`` rows are ``(x0, y0, w, h)`` in input pixels; factors are 1 (hue 0) where jitter was
    not applied; ``order`` is the jitter order used for this batch (0 brightness, 1 contrast,
    2 saturation, 3 hue); ``blur_sigma`` is 0 where no blur.
    """

    crop: torch.Tensor
    flip: torch.Tensor
    jitter: torch.Tensor
    brightness: torch.Tensor
    contrast: torch.Tensor
    saturation: torch.Tensor
    hue: torch.Tensor
    order: list[int]
    grayscale: torch.Tensor
    blur_sigma: torch.Tensor
    solarize: torch.Tensor

    def select(self, index: slice | torch.Tensor) -> ViewParams:
        """The parameters of a subset of the views (e.g. this process's slice)."""
        picked = {k: v if k == "order" else v[index] for k, v in self.__dict__.items()}
        return ViewParams(**picked)


def _uniform(n, lo, hi, g, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def _bernoulli(n, p, g, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def sample_crops(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    attempts: int = 10,
) -> torch.Tensor:
    """Random resized crop boxes ``(n, 4)`` as ``(x0, y0, w, h)``, drawn like torchvision.

    Like ``RandomResizedCrop.get_params``: area fraction uniform in ``scale``, aspect ratio
    log-uniform in ``ratio``, up to ``attempts`` tries for a box that fits, else the whole image
    clipped to the ratio range; position uniform. Sizes are whole pixels, as torchvision's.
    """
    area = height * width
    s = _uniform((n, attempts), scale[0], scale[1], generator, device) * area
    log_r = _uniform((n, attempts), math.log(ratio[0]), math.log(ratio[1]), generator, device)
    r = torch.exp(log_r)
    w = torch.round(torch.sqrt(s * r))
    h = torch.round(torch.sqrt(s / r))
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(
        ok.any(1), ok.float().argmax(1), torch.zeros_like(ok[:, 0], dtype=torch.long)
    )
    w = w.gather(1, first[:, None]).squeeze(1)
    h = h.gather(1, first[:, None]).squeeze(1)
    # fallback (no attempt fitted): central crop of the whole image within the ratio range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        fw, fh = int(round(height * ratio[1])), height
    else:
        fw, fh = width, height
    any_ok = ok.any(1)
    w = torch.where(any_ok, w, torch.full_like(w, fw))
    h = torch.where(any_ok, h, torch.full_like(h, fh))
    u = torch.rand(n, 2, generator=generator, device=device)
    x0 = torch.floor(u[:, 0] * (width - w + 1))
    y0 = torch.floor(u[:, 1] * (height - h + 1))
    x0 = torch.where(any_ok, x0, torch.full_like(x0, (width - fw) // 2))
    y0 = torch.where(any_ok, y0, torch.full_like(y0, (height - fh) // 2))
    return torch.stack([x0, y0, w, h], dim=1)


def sample_view_params(
    cfg: ViewConfig,
    n: int,
    height: int,
    width: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    order_generator: torch.Generator | None = None,
) -> ViewParams:
    """Draw the random parameters of ``n`` views of ``height × width`` images under ``cfg``.

    ``generator`` lives on ``device``; the jitter order (a Python list) is drawn from
    ``order_generator`` (a CPU generator; defaults to ``generator`` when that is on the CPU)
    so that drawing on a GPU never waits for it.

    Example:
        >>> p = sample_view_params(SimCLRViews(size=32), 5, 32, 32)
        >>> p.crop.shape, p.flip.shape
        (torch.Size([5, 4]), torch.Size([5]))
    """
    g, dev = generator, device
    crop = sample_crops(n, height, width, cfg.scale, cfg.ratio, g, dev)
    flip = _bernoulli(n, cfg.flip_p, g, dev)
    jitter = _bernoulli(n, cfg.jitter_p, g, dev)
    one = torch.ones(n, device=dev)

    def factor(strength: float) -> torch.Tensor:
        drawn = _uniform(n, max(0.0, 1 - strength), 1 + strength, g, dev)
        return torch.where(jitter, drawn, one)

    brightness, contrast, saturation = (
        factor(cfg.brightness),
        factor(cfg.contrast),
        factor(cfg.saturation),
    )
    hue = torch.where(jitter, _uniform(n, -cfg.hue, cfg.hue, g, dev), torch.zeros_like(one))
    if order_generator is None and torch.device(dev).type != "cpu":
        order_generator = torch.Generator().manual_seed(int(torch.randint(1 << 30, (1,))))
    order = torch.randperm(4, generator=order_generator or g).tolist()
    grayscale = _bernoulli(n, cfg.grayscale_p, g, dev)
    blur = _bernoulli(n, cfg.blur_p, g, dev)
    sigma = _uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], g, dev)
    blur_sigma = torch.where(blur, sigma, torch.zeros_like(sigma))
    solarize = _bernoulli(n, cfg.solarize_p, g, dev)
    return ViewParams(
        crop, flip, jitter, brightness, contrast, saturation, hue, order, grayscale,
        blur_sigma, solarize,
    )  # fmt: skip


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as torchvision's rgb_to_grayscale: ``(B, 3, H, W)`` → ``(B, 1, H, W)``."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).to(x.dtype)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1).to(torch.float32)


def _rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


def _hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    mask = i.unsqueeze(1) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=1)
    a2 = torch.stack((t, v, v, q, p, p), dim=1)
    a3 = torch.stack((p, p, t, v, v, q), dim=1)
    a4 = torch.stack((a1, a2, a3), dim=1)  # (B, 3, 6, H, W)
    return torch.einsum("...ijk,...xijk->...xjk", mask.to(x.dtype), a4)


def _jitter(x: torch.Tensor, p: ViewParams) -> torch.Tensor:
    for op in p.order:
        if op == 0:
            x = (x * _per_image(p.brightness)).clamp(0, 1)
        elif op == 1:
            mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
            c = _per_image(p.contrast)
            x = (c * x + (1 - c) * mean).clamp(0, 1)
        elif op == 2:
            s = _per_image(p.saturation)
            x = (s * x + (1 - s) * _gray(x)).clamp(0, 1)
        else:
            hsv = _rgb_to_hsv(x)
            h = torch.remainder(hsv[:, 0] + p.hue.view(-1, 1, 1), 1.0)
            shifted = _hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], dim=1))
            x = torch.where(_per_image(p.hue) != 0, shifted, x)
    return x


def _blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma (sigma 0 = unchanged), reflect padding."""
    b, c, h, w = x.shape
    half = kernel_size // 2
    t = torch.arange(kernel_size, device=x.device, dtype=x.dtype) - half
    s = sigma.to(x.dtype).clamp_min(1e-6).view(-1, 1)
    k = torch.exp(-0.5 * (t / s) ** 2)
    k = k / k.sum(1, keepdim=True)
    k = torch.where(sigma.view(-1, 1) > 0, k, (t == 0).to(x.dtype).expand_as(k))
    k = k.repeat_interleave(c, dim=0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)
    y = F.pad(y, (half, half, half, half), mode="reflect")
    y = F.conv2d(y, k.view(b * c, 1, 1, kernel_size), groups=b * c)
    y = F.conv2d(y, k.view(b * c, 1, kernel_size, 1), groups=b * c)
    return y.view(b, c, h, w)


def apply_view_params(images: torch.Tensor, p: ViewParams, cfg: ViewConfig) -> torch.Tensor:
    """Make the views drawn in ``p`` from uint8 ``(B, 3, H, W)`` images: float ``(B, 3, S, S)``.

    Crop + resize + flip are one bilinear `grid_sample` over per-image affine grids.
    """
    check_uint8_images(images)
    b, _, height, width = images.shape
    x = images.to(torch.float32) / 255.0
    x0, y0, w, h = p.crop.to(x.device, torch.float32).unbind(1)
    sx = w / width
    sy = h / height
    tx = (2 * x0 + w) / width - 1
    ty = (2 * y0 + h) / height - 1
    sx = torch.where(p.flip.to(x.device), -sx, sx)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, cfg.size, cfg.size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.jitter_p > 0:  # decided by the config, not the draw: no device-to-host sync
        x = _jitter(x, p)
    gray = _per_image(p.grayscale.to(x.device)).bool()
    x = torch.where(gray, _gray(x).expand_as(x), x)
    if cfg.blur_p > 0:
        x = _blur(x, p.blur_sigma.to(x.device), cfg.blur_kernel_size)
    x = torch.where(_per_image(p.solarize.to(x.device)).bool() & (x >= 0.5), 1.0 - x, x)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1)
    # the hue einsum can leave odd strides; conv weight grads would follow them (DDP warns)
    return ((x - mean) / std).contiguous()


def make_views(
    images: torch.Tensor, cfg: ViewConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random view of each uint8 image ``(B, 3, H, W)`` in one batched call.

    ``generator`` must live on the images' device.

    Example:
        >>> import torch
        >>> imgs = torch.randint(0, 256, (4, 3, 40, 40), dtype=torch.uint8)
        >>> make_views(imgs, SimCLRViews(size=32)).shape
        torch.Size([4, 3, 32, 32])
    """
    check_uint8_images(images)
    b, _, h, w = images.shape
    params = sample_view_params(cfg, b, h, w, generator, images.device)
    return apply_view_params(images, params, cfg)


def check_uint8_images(images: torch.Tensor) -> None:
    """Raise a ValueError unless ``images`` is a uint8 RGB batch ``(B, 3, H, W)``."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a uint8 tensor (B, 3, H, W), got {type(images)!r}")
    if images.dtype != torch.uint8:
        raise ValueError(
            f"images must be uint8 (0-255 pixel values), got dtype {images.dtype}; "
            "convert with (x * 255).round().to(torch.uint8) or load them with multicon.data"
        )
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must be RGB with shape (B, 3, H, W), got {tuple(images.shape)}; "
            "convert grayscale/RGBA images to RGB first"
        )


def eval_transform(images: torch.Tensor, cfg: ViewConfig) -> torch.Tensor:
    """Deterministic view for evaluation: resize to ``cfg.size`` (if needed) and normalise.

    Example:
        >>> import torch
        >>> eval_transform(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), SimCLRViews()).shape
        torch.Size([2, 3, 32, 32])
    """
    check_uint8_images(images)
    x = images.to(torch.float32) / 255.0
    if x.shape[-2:] != (cfg.size, cfg.size):
        x = F.interpolate(x, size=(cfg.size, cfg.size), mode="bilinear", antialias=True)
    mean = torch.tensor(cfg.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
