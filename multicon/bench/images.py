"""Images/s of a SimCLR training step three ways, same model and batch, printed as JSON:

* ``cpu_views``: views from torchvision v2 transforms in DataLoader workers (the usual pipeline);
* ``device_views``: the uint8 dataset held on the device, views made there per batch;
* ``ceiling``: forward/backward/step on one fixed batch already on the device (no views at all).

An image here is one pair (two views), as the trainer counts samples. Images are random uint8
(views cost the same whatever the pixels; decoding happens once, before timing).

    multicon bench images --device cuda --batch_size 512 --mixed_precision bf16 \
        --channels_last --compile --num_workers 16
    multicon bench images --device cpu --image_size 16 --batch_size 32 --steps 5 \
        --num_workers 1 --cifar_stem false     # the tiny CPU check
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
from transformers import HfArgumentParser

from multicon import methods
from multicon.encoders import ImageEncoder
from multicon.pairs import PairBatch
from multicon.pairs.base import SeededPairs
from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import SimCLRViews


@dataclass
class BenchArgs:
    device: str = field(default="", metadata={"help": "'' picks cuda when present."})
    arch: str = "resnet18"
    cifar_stem: bool = True
    image_size: int = 32
    num_images: int = field(default=0, metadata={"help": "Dataset size (0: 8 batches' worth)."})
    batch_size: int = 512
    steps: int = field(default=30, metadata={"help": "Timed steps per mode."})
    warmup: int = field(default=5, metadata={"help": "Untimed steps first (compile, cudnn)."})
    num_workers: int = 8
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    channels_last: bool = False
    compile: bool = False
    modes: str = "ceiling,device_views,cpu_views"
    threads: int = field(default=0, metadata={"help": "torch intra-op threads (0: default)."})
    views_only: bool = field(
        default=False, metadata={"help": "Time making the views alone (no model step)."}
    )


def cycle(make: Callable[[], Iterator[PairBatch]]) -> Iterator[PairBatch]:
    while True:
        yield from make()


def build_parser() -> HfArgumentParser:
    """The benchmark's flags."""
    return HfArgumentParser(BenchArgs)


def main(argv: list[str] | None = None, prog: str = "multicon bench images") -> dict:
    """Run, print and return the JSON report; ``prog`` starts its ``command``."""
    (args,) = build_parser().parse_args_into_dataclasses(args=argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    n = args.num_images or 8 * args.batch_size
    images = torch.randint(0, 256, (n, 3, args.image_size, args.image_size), dtype=torch.uint8)
    views = SimCLRViews(size=args.image_size)
    torch.manual_seed(0)
    encoder = ImageEncoder(args.arch, cifar_stem=args.cifar_stem, channels_last=args.channels_last)
    # symmetric InfoNCE over the batch's other views (one encoder, CLIP's loss at a fixed τ)
    model = methods.clip(encoder, encoder, 0.5, learnable=False).to(device)
    if args.compile:
        encoder.compile()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)

    def step(batch: PairBatch) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = model(batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sources() -> dict[str, Callable[[], Iterator[PairBatch]]]:
        device_pairs = DeviceViewPairs(images, views)
        fixed = next(device_pairs.batches(args.batch_size, epoch=0, device=device))
        cpu_pairs = ViewPairs(images, views)
        loader = torch.utils.data.DataLoader(
            SeededPairs(cpu_pairs, seed=0),  # as the trainer feeds it: per-pair seeded draws
            batch_size=args.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=args.num_workers,
            collate_fn=cpu_pairs.collate,
            pin_memory=device.type == "cuda",
            persistent_workers=args.num_workers > 0,
        )
        epoch = iter(range(10**9))
        return {
            "ceiling": lambda: iter([fixed] * 8),
            "device_views": lambda: device_pairs.batches(
                args.batch_size, epoch=next(epoch), device=device
            ),
            "cpu_views": lambda: (b.to(device, non_blocking=True) for b in loader),
        }

    made = sources()
    results = {}
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in made:
            raise ValueError(f"unknown mode {mode!r}; choose from {sorted(made)}")
        batches = cycle(made[mode])
        run = (lambda b: None) if args.views_only else step
        for _ in range(args.warmup):
            run(next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            run(next(batches))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        results[mode] = round(args.steps * args.batch_size / seconds, 1)
    report = {
        "images_per_s": results,
        "device_over_cpu_views": (
            round(results["device_views"] / results["cpu_views"], 2)
            if {"device_views", "cpu_views"} <= results.keys()
            else None
        ),
        "measured": "views only" if args.views_only else "full training step",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_count": __import__("os").cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "args": asdict(args),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
