"""``multicon eval images``: weighted kNN and a linear probe of a saved image encoder.

Features of both splits are computed once (bf16 autocast on CUDA); the kNN (k 200, τ 0.1) and
the linear probe (Adam, cosine, on standardised features) then run on the device. Prints JSON
with the exact command.

    multicon eval images --model runs/simclr_cifar10/model --data ../shared/data/cifar10
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

from multicon.cli.saved import require_kind
from multicon.data import load_images
from multicon.encoders import ImageEncoder
from multicon.eval import extract_features, knn_accuracy, linear_probe
from multicon.pairs.views import CIFAR10_MEAN, CIFAR10_STD, ViewConfig


@dataclass
class EvalArgs:
    model: str = field(
        metadata={"help": "Folder written by save_pretrained (the recipe's model/)."}
    )
    data: str = "../shared/data/cifar10"
    train_split: str = "train"
    test_split: str = "test"
    image_size: int = field(default=0, metadata={"help": "Resize to this (0: the images' own)."})
    mean: list[float] = field(
        default_factory=list,
        metadata={"help": "Input mean (default: the model's saved normalize, else CIFAR-10's)."},
    )
    std: list[float] = field(
        default_factory=list,
        metadata={"help": "Input std (default: the model's saved normalize, else CIFAR-10's)."},
    )
    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_probe: bool = True
    probe_epochs: int = 100
    probe_lr: float = 1e-3
    batch_size: int = 512
    max_train_images: int = field(default=0, metadata={"help": "Use only the first N (0: all)."})
    max_test_images: int = field(default=0, metadata={"help": "Use only the first N (0: all)."})
    device: str = field(default="", metadata={"help": "'' picks cuda when present."})
    progress_bar: bool = field(
        default=True, metadata={"help": "tqdm bars while images decode and features extract."}
    )

    def __post_init__(self) -> None:
        for name in ("max_train_images", "max_test_images"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")


def build_parser() -> HfArgumentParser:
    """The command's flags."""
    return HfArgumentParser(EvalArgs)


def main(argv: list[str] | None = None, prog: str = "multicon eval images") -> dict:
    """Evaluate, print and return the JSON report; ``prog`` starts its ``command``."""
    (args,) = build_parser().parse_args_into_dataclasses(args=argv)
    require_kind(args.model, "images", "multicon eval images")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = ImageEncoder.from_pretrained(args.model).to(device)
    # the first N are chosen before decoding: the rest are never read
    bars = {"progress": args.progress_bar}
    train = load_images(args.data, args.train_split, limit=args.max_train_images or None, **bars)
    test = load_images(args.data, args.test_split, limit=args.max_test_images or None, **bars)
    train_labels = train.require_labels("kNN and the linear probe (train split)")
    test_labels = test.require_labels("kNN and the linear probe (test split)")
    # the statistics the encoder was trained with (models saved before they were recorded:
    # the CIFAR-10 values every image recipe used then)
    saved = encoder.normalize or {"mean": CIFAR10_MEAN, "std": CIFAR10_STD}
    views = ViewConfig(
        size=args.image_size or train.image_size[0],
        mean=tuple(args.mean or saved["mean"]),
        std=tuple(args.std or saved["std"]),
    )
    start = time.perf_counter()
    train_feats = extract_features(encoder, train, views, batch_size=args.batch_size, **bars)
    test_feats = extract_features(encoder, test, views, batch_size=args.batch_size, **bars)
    feature_seconds = time.perf_counter() - start
    result = {
        "knn_top1": knn_accuracy(
            train_feats, train_labels, test_feats, test_labels,
            k=args.knn_k, temperature=args.knn_temperature,
        ),
    }  # fmt: skip
    if args.linear_probe:
        start = time.perf_counter()
        probe = linear_probe(
            train_feats, train_labels, test_feats, test_labels,
            epochs=args.probe_epochs, lr=args.probe_lr, device=device,
        )  # fmt: skip
        result.update(
            linear_top1=probe["top1"],
            linear_train_top1=probe["train_top1"],
            probe_seconds=round(time.perf_counter() - start, 2),
        )
    result.update(
        feature_seconds=round(feature_seconds, 2),
        train_images=len(train),
        test_images=len(test),
        device=str(device),
        command=" ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        args=asdict(args),
    )
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
