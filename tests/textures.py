"""Small labelled texture images made by the tests: stripes (two directions), checks, rings."""

import math
from pathlib import Path

import torch

from multicon.data import ImageData

CLASSES = ["vertical", "horizontal", "checks", "rings"]


def texture_images(n_per_class: int, size: int = 16, seed: int = 0) -> ImageData:
    """Random period, phase and two random colours per image; the class is the pattern only."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    images, labels = [], []
    for label in range(len(CLASSES)):
        for _ in range(n_per_class):
            freq = 2 * math.pi / (3 + 3 * torch.rand(1, generator=g).item())
            phase = 2 * math.pi * torch.rand(1, generator=g).item()
            if label == 0:
                pattern = torch.sin(freq * xx + phase)
            elif label == 1:
                pattern = torch.sin(freq * yy + phase)
            elif label == 2:
                pattern = torch.sin(freq * xx + phase) * torch.sin(freq * yy + phase)
            else:
                cx, cy = (size * torch.rand(2, generator=g)).tolist()
                pattern = torch.sin(freq * ((xx - cx) ** 2 + (yy - cy) ** 2).sqrt() + phase)
            fg, bg = torch.rand(3, 1, 1, generator=g), torch.rand(3, 1, 1, generator=g)
            mask = (pattern > 0).float()
            images.append(((fg * mask + bg * (1 - mask)) * 255).round().to(torch.uint8))
            labels.append(label)
    return ImageData(torch.stack(images), torch.tensor(labels), list(CLASSES))


def write_image_folder(root: Path, data: ImageData) -> Path:
    """Save as ``root/<class>/<i>.png`` (the layout load_image_folder reads)."""
    from PIL import Image

    for i, (img, label) in enumerate(zip(data.images, data.labels.tolist(), strict=True)):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:05d}.png")
    return root
