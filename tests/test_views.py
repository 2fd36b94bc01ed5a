"""The device views draw what the recipe says: measured from the output pixels, not the params."""

import math

import pytest
import torch
from torchvision.transforms import v2

from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import (
    MoCoV2Views,
    SimCLRViews,
    ViewConfig,
    make_views,
    moco_v3_views,
    sample_crops,
)

SIDE, OUT = 64, 16
PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def ramp_images(n: int) -> torch.Tensor:
    """Red = 4·x, green = 4·y: a view's pixels reveal which box of the image it shows."""
    coords = torch.arange(SIDE, dtype=torch.int64) * 4
    img = torch.stack(
        [coords.view(1, -1).expand(SIDE, SIDE), coords.view(-1, 1).expand(SIDE, SIDE)]
        + [torch.full((SIDE, SIDE), 128)]
    ).to(torch.uint8)
    return img.unsqueeze(0).expand(n, -1, -1, -1).contiguous()


def boxes_from_views(views: torch.Tensor, first: int = 0) -> dict[str, torch.Tensor]:
    """Recover crop width/height/flip from ramp views (columns ``first`` and ``OUT-1-first``)."""
    last = OUT - 1 - first
    red = views[:, 0].mean(1) * 255 / 4  # (B, OUT): sampled x per output column
    green = views[:, 1].mean(2) * 255 / 4
    dx = (red[:, last] - red[:, first]) / (last - first)
    dy = (green[:, last] - green[:, first]) / (last - first)
    w, h = dx.abs() * OUT, dy * OUT
    return {"scale": w * h / SIDE**2, "log_ratio": torch.log(w / h), "flip": dx < 0}


def torchvision_reference(n: int, scale, ratio) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    img = torch.zeros(3, SIDE, SIDE)
    boxes = [v2.RandomResizedCrop.get_params(img, list(scale), list(ratio)) for _ in range(n)]
    h = torch.tensor([b[2] for b in boxes], dtype=torch.float32)
    w = torch.tensor([b[3] for b in boxes], dtype=torch.float32)
    return {"scale": w * h / SIDE**2, "log_ratio": torch.log(w / h)}


def ks_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov–Smirnov statistic (max gap between empirical CDFs)."""
    grid = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, grid, right=True) / len(a)
    cdf_b = torch.searchsorted(b.sort().values, grid, right=True) / len(b)
    return float((cdf_a - cdf_b).abs().max())


N = 4000
# KS critical value for two samples of 4000 at alpha = 0.001 is about 0.044
KS_LIMIT = 0.045


@pytest.fixture(scope="module")
def device_boxes():
    cfg = ViewConfig(size=OUT, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, **PLAIN)
    g = torch.Generator().manual_seed(1)
    return boxes_from_views(make_views(ramp_images(N), cfg, g))


@pytest.fixture(scope="module")
def reference():
    return torchvision_reference(N, (0.08, 1.0), (3 / 4, 4 / 3))


def test_device_crops_follow_torchvision_distribution(device_boxes, reference):
    assert device_boxes["scale"].min() >= 0.08 * 0.9 and device_boxes["scale"].max() <= 1.001
    assert device_boxes["log_ratio"].abs().max() <= math.log(4 / 3) + 0.08
    assert ks_distance(device_boxes["scale"], reference["scale"]) < KS_LIMIT
    assert ks_distance(device_boxes["log_ratio"], reference["log_ratio"]) < KS_LIMIT


def test_crop_check_can_fail(reference):
    """The KS check rejects the MoCo range (0.2–1) when SimCLR's (0.08–1) is configured."""
    cfg = ViewConfig(size=OUT, scale=(0.2, 1.0), jitter_p=0.0, grayscale_p=0.0, **PLAIN)
    boxes = boxes_from_views(make_views(ramp_images(N), cfg, torch.Generator().manual_seed(2)))
    assert ks_distance(boxes["scale"], reference["scale"]) > 3 * KS_LIMIT


def test_flip_rate(device_boxes):
    assert abs(device_boxes["flip"].float().mean().item() - 0.5) < 0.03


def test_flip_rate_zero_and_one():
    for p in (0.0, 1.0):
        cfg = ViewConfig(size=OUT, flip_p=p, jitter_p=0.0, grayscale_p=0.0, **PLAIN)
        flips = boxes_from_views(make_views(ramp_images(200), cfg))["flip"]
        assert flips.float().mean().item() == p


def flat_images(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    colours = torch.randint(60, 121, (n, 3, 1, 1), generator=g, dtype=torch.uint8)
    return colours.expand(n, 3, 8, 8).contiguous()


def test_jitter_rate_and_brightness_range():
    imgs = flat_images(N)
    cfg = ViewConfig(
        size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, brightness=0.4,
        contrast=0.0, saturation=0.0, hue=0.0, grayscale_p=0.0, **PLAIN,
    )  # fmt: skip
    out = make_views(imgs, cfg, torch.Generator().manual_seed(3))
    factor = (out[:, :, 0, 0] * 255 / imgs[:, :, 0, 0].float()).mean(1)
    jittered = (factor - 1).abs() > 1e-4
    assert abs(jittered.float().mean().item() - 0.8) < 0.03
    f = factor[jittered]
    assert f.min() >= 0.6 - 1e-3 and f.max() <= 1.4 + 1e-3
    # uniform on [0.6, 1.4]: quartiles at 0.8, 1.0, 1.2
    q = torch.quantile(f, torch.tensor([0.25, 0.5, 0.75]))
    assert torch.allclose(q, torch.tensor([0.8, 1.0, 1.2]), atol=0.03)


def test_full_jitter_rate_and_hue_changes_colour():
    imgs = flat_images(N, seed=1)
    cfg = ViewConfig(size=8, scale=(1.0, 1.0), grayscale_p=0.0, **PLAIN)
    out = make_views(imgs, cfg, torch.Generator().manual_seed(4))
    changed = (out[:, :, 0, 0] * 255 - imgs[:, :, 0, 0].float()).abs().amax(1) > 0.5
    assert abs(changed.float().mean().item() - 0.8) < 0.03
    hue_only = ViewConfig(
        size=8, scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0.1,
        jitter_p=1.0, grayscale_p=0.0, **PLAIN,
    )  # fmt: skip
    shifted = make_views(imgs[:200], hue_only)[:, :, 0, 0]
    # hue shifts keep value (max channel) and saturation but move the colour
    assert torch.allclose(shifted.amax(1) * 255, imgs[:200, :, 0, 0].float().amax(1), atol=0.6)


def test_grayscale_rate():
    imgs = flat_images(N, seed=2)
    cfg = ViewConfig(size=8, jitter_p=0.0, grayscale_p=0.2, **PLAIN)
    out = make_views(imgs, cfg, torch.Generator().manual_seed(5))
    gray = (out[:, 0] - out[:, 1]).abs().amax((1, 2)) + (out[:, 1] - out[:, 2]).abs().amax((1, 2))
    assert abs((gray < 1e-6).float().mean().item() - 0.2) < 0.025


def test_blur_and_solarize():
    imgs = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8)
    base = dict(size=64, scale=(1, 1), ratio=(1, 1), flip_p=0, jitter_p=0, grayscale_p=0)
    sharp = make_views(imgs, ViewConfig(**base, blur_p=0.0, **PLAIN))
    blurred = make_views(imgs, ViewConfig(**base, blur_p=1.0, blur_sigma=(1.5, 2.0), **PLAIN))
    assert blurred.std() < 0.5 * sharp.std()
    assert torch.allclose(blurred.mean(), sharp.mean(), atol=0.01)
    solar = make_views(imgs, ViewConfig(**base, blur_p=0.0, solarize_p=1.0, **PLAIN))
    assert solar.max() < 0.5 + 1e-6
    assert torch.allclose(solar, torch.where(sharp >= 0.5, 1 - sharp, sharp))


def test_presets():
    assert SimCLRViews().scale == (0.08, 1.0) and MoCoV2Views().scale == (0.2, 1.0)
    assert SimCLRViews(size=32).blur_p == 0.0 and SimCLRViews(size=96).blur_p == 0.5
    first, second = moco_v3_views(224)
    assert first.blur_p == 1.0 and second.solarize_p == 0.2 and first.solarize_p == 0.0
    assert ViewConfig(**SimCLRViews().to_dict()) == ViewConfig(**SimCLRViews().to_dict())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale=(0.5, 0.2)), "scale"),
        (dict(scale=(0.2, 1.5)), "at most 1"),
        (dict(flip_p=1.5), "flip_p"),
        (dict(hue=0.7), "hue"),
        (dict(std=(0.0, 1.0, 1.0)), "std"),
    ],
)
def test_bad_view_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ViewConfig(**kwargs)


def test_fallback_crop_for_impossible_ratio():
    boxes = sample_crops(50, 10, 40, (0.9, 1.0), (1.0, 1.0))  # square crops of ≥ 90% can't fit
    assert torch.all(boxes[:, 2] == 10) and torch.all(boxes[:, 3] == 10)


def test_cpu_views_match_device_ranges(reference):
    """The torchvision v2 path, measured the same way, has the same crop and flip law."""
    cfg = ViewConfig(size=OUT, jitter_p=0.0, grayscale_p=0.0, **PLAIN)
    torch.manual_seed(6)
    pairs = ViewPairs(ramp_images(800), cfg)
    views = torch.stack([pairs[i].query for i in range(800)])
    boxes = boxes_from_views(views, first=3)
    assert abs(boxes["flip"].float().mean().item() - 0.5) < 0.06
    ref = {k: v[:800] for k, v in reference.items()}
    assert ks_distance(boxes["scale"], ref["scale"]) < 0.1
    assert ks_distance(boxes["log_ratio"], ref["log_ratio"]) < 0.1


def test_bad_images():
    cfg = SimCLRViews(size=8)
    with pytest.raises(ValueError, match="uint8"):
        DeviceViewPairs(torch.rand(4, 3, 8, 8), cfg)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        DeviceViewPairs(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), cfg)
    with pytest.raises(ValueError, match="mode"):
        from PIL import Image

        ViewPairs([Image.new("I;16", (8, 8))], cfg)[0]


def test_batch_larger_than_dataset():
    pairs = DeviceViewPairs(torch.zeros(10, 3, 8, 8, dtype=torch.uint8), SimCLRViews(size=8))
    with pytest.raises(ValueError, match="larger than the dataset of 10"):
        next(pairs.batches(16, epoch=0, device="cpu"))


def test_device_pairs_are_reproducible_and_sharded():
    imgs = torch.randint(0, 256, (12, 3, 8, 8), dtype=torch.uint8)
    pairs = DeviceViewPairs(imgs, SimCLRViews(size=8), seed=3)
    a = list(pairs.batches(4, epoch=1, device="cpu"))
    b = list(pairs.batches(4, epoch=1, device="cpu"))
    assert all(torch.equal(x.query, y.query) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0].query, a[0].key)  # two different views
    # two processes with batch 2 render exactly the views one process makes with batch 4
    ranks = [list(pairs.batches(2, epoch=1, device="cpu", rank=r, world_size=2)) for r in (0, 1)]
    for step, single in enumerate(a):
        both = [ranks[0][step], ranks[1][step]]
        assert torch.equal(torch.cat([bt.key_id for bt in both]), single.key_id)
        assert torch.allclose(torch.cat([bt.query for bt in both]), single.query, atol=1e-6)
        assert torch.allclose(torch.cat([bt.key for bt in both]), single.key, atol=1e-6)


def test_cpu_views_over_a_lazy_folder_of_mixed_sizes(tmp_path):
    """ViewPairs reads any dataset of (PIL image, label), e.g. torchvision's ImageFolder."""
    from PIL import Image
    from torchvision.datasets import ImageFolder

    (tmp_path / "a").mkdir()
    Image.new("RGB", (40, 30), "red").save(tmp_path / "a" / "0.png")
    Image.new("L", (20, 50), 128).save(tmp_path / "a" / "1.png")
    pairs = ViewPairs(ImageFolder(str(tmp_path)), SimCLRViews(size=16))
    batch = pairs.collate([pairs[0], pairs[1]])
    assert batch.query.shape == (2, 3, 16, 16) and batch.key_id.tolist() == [0, 1]
