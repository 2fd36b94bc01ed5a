"""SimCLR on CIFAR-10: two views of each image, the other 2B-2 views of the batch as negatives.

Preset (lightly's CIFAR-10 benchmark settings, which report 84.8% kNN top-1 after 200 epochs at
batch 512): ResNet-18 with the CIFAR stem, 2-layer projection head 512→2048→128 with BatchNorm,
NT-Xent (symmetric InfoNCE, the other queries negative too) with temperature 0.5; SGD momentum
0.9, weight decay 5e-4, lr 0.12 per 256 images scaled linearly with the global batch (0.24 at
batch 512), cosine decay;
views: crop scale 0.08–1, flip, colour jitter 0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2, no blur
at 32 px. kNN monitor (k 200, τ 0.1) on the test split every 10 epochs.

    python recipes/simclr_cifar10.py --output_dir runs/simclr --mixed_precision bf16
    accelerate launch --num_processes 2 recipes/simclr_cifar10.py --output_dir runs/simclr2
    # a 2-minute CPU smoke run:
    python recipes/simclr_cifar10.py --output_dir runs/simclr-smoke --max_steps 5 \
        --batch_size 32 --max_train_images 512 --max_test_images 256 --head_hidden_dim 256
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import HfArgumentParser

from multicon import methods
from multicon.hub import HubArgs
from multicon.image_recipe import (
    CIFAR10_SGD_PRESET,
    ImageDataArgs,
    ImageEncoderArgs,
    run_image_recipe,
)
from multicon.pairs.views import SimCLRViews
from multicon.steps import GradCacheArgs
from multicon.train import TrainConfig


@dataclass
class SimCLRArgs:
    temperature: float = field(default=0.5, metadata={"help": "NT-Xent temperature."})
    crop_min_scale: float = field(default=0.08, metadata={"help": "Smallest crop area share."})


def build_parser() -> HfArgumentParser:
    """The recipe's flags and defaults (``multicon simclr --help`` lists them)."""
    parser = HfArgumentParser(
        (SimCLRArgs, ImageDataArgs, ImageEncoderArgs, TrainConfig, HubArgs, GradCacheArgs)
    )
    parser.set_defaults(
        **CIFAR10_SGD_PRESET,
        output_dir="runs/simclr_cifar10",
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args, data_args, encoder_args, config, hub, cache = parser.parse_args_into_dataclasses(
        args=argv
    )
    step = cache.step(config.batch_size)  # a bad --grad_cache_chunk, before any work

    def build_model(encoder):
        return methods.simclr(encoder, args.temperature)

    def views(size: int):
        return SimCLRViews(size=size, scale=(args.crop_min_scale, 1.0)), None

    return run_image_recipe(
        "SimCLR", build_model, views, data_args, encoder_args, config, argv, args, hub, step
    )


if __name__ == "__main__":
    main()
