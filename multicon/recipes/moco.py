"""MoCo on CIFAR-10: keys from a momentum (EMA) encoder; negatives from a queue of past keys.

Presets:

* ``--version v2`` (default; MoCo v2, Chen et al. 2020): views with crop scale 0.2–1, jitter
  0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2 (no blur at 32 px); head 512→2048→128 without
  BatchNorm; each query scored against its own key and a queue of ``--queue_size`` 4096 past
  keys (lightly's CIFAR-10 setting) at temperature 0.1; key encoder momentum 0.99 rising to 1 on
  a cosine over training.
* ``--version v3`` (MoCo v3, Chen et al. 2021): 3-layer head 512→2048→256 with a last
  BatchNorm, 2-layer predictor (hidden 2048) on the query side only, symmetric loss over the
  batch's momentum keys (no queue), temperature 0.2, asymmetric views (blur/solarize; blur only
  from 64 px).

Both: ResNet-18 CIFAR stem, SGD momentum 0.9, weight decay 5e-4, lr 0.12 per 256 images scaled
with the global batch, cosine decay, 200 epochs at batch 512, kNN monitor every 10 epochs.

    python recipes/moco_cifar10.py --output_dir runs/moco --mixed_precision bf16
    accelerate launch --num_processes 2 recipes/moco_cifar10.py --output_dir runs/moco2
    python recipes/moco_cifar10.py --version v3 --output_dir runs/mocov3
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import HfArgumentParser

from multicon import methods
from multicon.hub import HubArgs
from multicon.image_recipe import (
    CIFAR10_SGD_PRESET,
    ImageDataArgs,
    ImageEncoderArgs,
    num_processes,
    run_image_recipe,
)
from multicon.pairs.views import MoCoV2Views, moco_v3_views
from multicon.steps import GradCacheArgs
from multicon.train import TrainConfig


@dataclass
class MoCoArgs:
    version: Literal["v2", "v3"] = "v2"
    queue_size: int = field(
        default=4096,
        metadata={"help": "Queued keys (v2); 0: no queue, the batch's momentum keys instead."},
    )
    temperature: float = field(default=0.0, metadata={"help": "0: 0.1 for v2, 0.2 for v3."})
    key_momentum: float = field(default=0.99, metadata={"help": "Key encoder EMA at start."})
    key_momentum_final: float = field(default=1.0, metadata={"help": "... and at the end."})
    symmetric: bool = field(default=False, metadata={"help": "v2: also swap the two views."})


def build_parser() -> HfArgumentParser:
    """The recipe's flags and defaults (``multicon moco --help`` lists them)."""
    parser = HfArgumentParser(
        (MoCoArgs, ImageDataArgs, ImageEncoderArgs, TrainConfig, HubArgs, GradCacheArgs)
    )
    parser.set_defaults(
        **CIFAR10_SGD_PRESET,
        output_dir="runs/moco_cifar10",
        head_batch_norm=False,
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args, data_args, encoder_args, config, hub, cache = parser.parse_args_into_dataclasses(
        args=argv
    )
    step = cache.step(config.batch_size)  # a bad --grad_cache_chunk, before any work
    v3 = args.version == "v3"
    if v3:  # MoCo v3 head: 3 layers with BatchNorm and a last BatchNorm, plus a predictor
        encoder_args.head_layers, encoder_args.head_batch_norm = 3, True
        encoder_args.head_last_batch_norm = True
        encoder_args.out_dim = 256 if encoder_args.out_dim == 128 else encoder_args.out_dim
        encoder_args.predictor_hidden_dim = encoder_args.predictor_hidden_dim or 2048
    temperature = args.temperature or (0.2 if v3 else 0.1)
    global_batch = config.batch_size * num_processes()
    if args.queue_size < 0:
        raise ValueError(f"--queue_size must be >= 0, got {args.queue_size}")
    if not v3 and 0 < args.queue_size < global_batch:
        raise ValueError(
            f"--queue_size {args.queue_size} is smaller than the global batch of "
            f"{global_batch}; raise --queue_size (MoCo enqueues a whole batch per step)"
        )
    momentum = (args.key_momentum, args.key_momentum_final)

    def build_model(encoder):
        if v3:
            return methods.moco_v3(encoder, encoder_args.build_predictor(), momentum, temperature)
        # queue_size 0 is the queue's ablation: the same loss over the batch's momentum keys
        return methods.moco_v2(
            encoder,
            args.queue_size,
            encoder_args.out_dim,
            momentum,
            temperature,
            symmetric=args.symmetric,
        )

    def views(size: int):
        return moco_v3_views(size) if v3 else (MoCoV2Views(size=size), None)

    return run_image_recipe(
        f"MoCo {args.version}",
        build_model,
        views,
        data_args,
        encoder_args,
        config,
        argv,
        args,
        hub,
        step,
    )


if __name__ == "__main__":
    main()
