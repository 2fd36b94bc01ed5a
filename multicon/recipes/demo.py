"""SimCLR on scikit-learn's handwritten digits: the offline demo of the whole engine.

Two random affine views of each 8×8 scan are a positive pair; the other images of the batch are
the negatives. Prints the kNN accuracy on held-out digits of the random-init encoder and of the
trained one, and writes a Hub-ready model folder (``--push_to_hub namespace/name`` uploads it).

    python recipes/demo_digits.py --output_dir runs/digits
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 recipes/demo_digits.py \
        --output_dir runs/digits2   # two CPU processes (gloo)
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from multicon import AffineViewPairs, TrainConfig, Trainer, knn_accuracy, methods
from multicon.data import load_digits
from multicon.encoders.small_cnn import SmallConvEncoder
from multicon.hub import HubArgs, save_run
from multicon.run_folder import check_output_dir


@dataclass
class DigitsArgs:
    width: int = field(default=32, metadata={"help": "Channels of the first conv block."})
    proj_dim: int = field(default=64, metadata={"help": "Projection (loss) dimension."})
    temperature: float = field(default=0.2, metadata={"help": "InfoNCE temperature."})
    knn_k: int = field(default=20, metadata={"help": "Neighbours in the kNN evaluation."})
    test_fraction: float = field(default=0.2, metadata={"help": "Held-out share of the digits."})


def features(encoder: SmallConvEncoder, images: torch.Tensor) -> torch.Tensor:
    device = next(encoder.parameters()).device
    with torch.no_grad():
        return torch.cat([encoder.features(x.to(device)).cpu() for x in images.split(512)])


def build_parser() -> HfArgumentParser:
    """The recipe's flags and defaults (``multicon demo --help`` lists them)."""
    parser = HfArgumentParser((DigitsArgs, TrainConfig, HubArgs))
    parser.set_defaults(
        output_dir="runs/digits",
        epochs=40,
        batch_size=256,
        lr=2e-3,
        warmup_steps=20,
        eval_every=10,
        log_every=5,
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    args, config, hub = parser.parse_args_into_dataclasses(args=argv)
    check_output_dir(config)  # a used output_dir is refused before any work
    torch.manual_seed(config.seed)
    train, test = load_digits(args.test_fraction, seed=config.seed)
    encoder = SmallConvEncoder(in_channels=1, width=args.width, proj_dim=args.proj_dim)
    # symmetric InfoNCE over the batch, one encoder for both views (CLIP's loss with a fixed τ)
    model = methods.clip(encoder, encoder, args.temperature, learnable=False)

    def evaluate(_=None) -> dict[str, float]:
        enc = encoder
        was_training = enc.training
        enc.eval()
        acc = knn_accuracy(
            features(enc, train.images),
            train.labels,
            features(enc, test.images),
            test.labels,
            k=args.knn_k,
        )
        enc.train(was_training)
        return {"knn_top1": acc}

    before = evaluate()["knn_top1"]
    start = time.perf_counter()
    trainer = Trainer(
        model, AffineViewPairs(train.images, seed=config.seed), config, evaluate=evaluate
    )
    result = trainer.fit()
    seconds = time.perf_counter() - start
    after = evaluate()["knn_top1"]

    model_dir = Path(config.output_dir) / "model"
    summary = {
        "knn_top1_random_init": round(before, 4),
        "knn_top1_trained": round(after, 4),
        "steps": result.global_step,
        "final_loss": round(result.loss, 4),
        "train_seconds": round(seconds, 1),
        "model_dir": str(model_dir),
        "held_out_images": len(test.labels),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "args": asdict(args),
    }
    if trainer.accelerator.is_main_process:  # one writer under `accelerate launch`
        save_run(
            model_dir,
            encoder,
            model_name="simclr-digits",
            method_tags=["simclr", "image"],
            datasets=["sklearn-digits"],
            metrics={"knn_top1": after},
            baseline={"knn_top1": before},
            task="image-classification",
            split="held-out",
            hyperparameters=[args, config],
            repo_id=hub.push_to_hub or None,
            description=(
                "A small convolutional encoder of 8x8 handwritten digits trained with SimCLR: "
                "symmetric InfoNCE (temperature "
                f"{args.temperature}) between two random affine views of each scan, the other "
                "scans of the batch as negatives. The kNN score is the weighted vote of the "
                f"{args.knn_k} nearest training digits in `model.features` space."
            ),
            preprocessing={
                "input_size": 8,
                "channels": 1,
                "scaling": "scikit-learn's digit pixels (0-16) / 16, to [0, 1]",
                "mean": [0.0],
                "std": [1.0],
                "feature_dim": encoder.feature_dim,
            },
        )
        push = hub.push_outcome(model_dir)
        summary["push"] = push
        summary["hub_commit"] = push.get("commit") if push else None
        (Path(config.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
