"""What the image recipes (SimCLR, MoCo) share: data and encoder flags, and the run itself.

A recipe picks the method (a `multicon.methods` composition and a view preset); `run_image_recipe`
loads the data, makes the pairs (device views or CPU workers), trains with the kNN monitor, and
writes beside the checkpoint: the encoder (``model/``, Hub format), ``knn_curve.png``,
``retrievals.png`` and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from multicon.data.images import ImageData, load_images
from multicon.dist import launch_state
from multicon.encoders.heads import ProjectionHead
from multicon.encoders.vision import ImageEncoder, sync_batchnorm
from multicon.eval.features import KNNMonitor
from multicon.eval.plots import plot_knn_curve, save_retrieval_grid
from multicon.hub import HubArgs, save_run
from multicon.model import ContrastiveModel
from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import ViewConfig
from multicon.run_folder import check_output_dir
from multicon.steps import Step
from multicon.train import TrainConfig, Trainer


@dataclass
class ImageDataArgs:
    """Where the images come from and how views and the kNN monitor are made."""

    data: str = field(
        default="../shared/data/cifar10",
        metadata={
            "help": "A folder (CIFAR pickles, Hub-layout parquet, or images in class folders) "
            "or a Hub dataset name (online)."
        },
    )
    train_split: str = "train"
    test_split: str = "test"
    image_size: int = field(default=0, metadata={"help": "View size (0: the images' own)."})
    on_error: Literal["raise", "skip"] = field(
        default="raise", metadata={"help": "Unreadable images: stop naming the file, or skip."}
    )
    views_on: Literal["device", "cpu"] = field(
        default="device",
        metadata={"help": "device: dataset held as uint8 on the device, views made there; "
                  "cpu: torchvision v2 transforms in DataLoader workers."},
    )  # fmt: skip
    knn_k: int = 200
    knn_temperature: float = 0.1
    knn_max_train: int = field(default=0, metadata={"help": "kNN memory bank size (0: all)."})
    max_train_images: int = field(
        default=0, metadata={"help": "Decode and use only the first N (0: all)."}
    )
    max_test_images: int = field(
        default=0, metadata={"help": "Decode and use only the first N (0: all)."}
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "knn_k")
        _at_least(self, 0, "image_size", "knn_max_train", "max_train_images", "max_test_images")
        if self.knn_temperature <= 0:
            raise ValueError(f"--knn_temperature must be positive, got {self.knn_temperature}")


def _at_least(args: object, low: int, *names: str) -> None:
    """Raise a ValueError naming the first flag of ``names`` below ``low``."""
    for name in names:
        value = getattr(args, name)
        if value < low:
            bound = "at least 1" if low == 1 else f">= {low}"
            raise ValueError(f"--{name} must be {bound}, got {value}")


# lightly's CIFAR-10 benchmark schedule, shared by the SimCLR and MoCo recipes.
CIFAR10_SGD_PRESET = dict(
    epochs=200,
    batch_size=512,
    optimizer="sgd",
    lr=0.12,
    weight_decay=5e-4,
    momentum=0.9,
    schedule="cosine",
    eval_every=10,
    log_every=20,
)


@dataclass
class ImageEncoderArgs:
    """The `ImageEncoder` and how it runs."""

    arch: str = "resnet18"
    cifar_stem: bool = field(default=True, metadata={"help": "3x3 stem, no max-pool (32px)."})
    head_hidden_dim: int = 2048
    out_dim: int = 128
    head_layers: int = 2
    head_batch_norm: bool = True
    head_last_batch_norm: bool = False
    predictor_hidden_dim: int = field(
        default=0, metadata={"help": "MoCo v3's 2-layer predictor width (0: the method's)."}
    )
    channels_last: bool = False
    compile: bool = field(default=False, metadata={"help": "torch.compile the backbones."})
    scale_lr: bool = field(
        default=True, metadata={"help": "Treat --lr as the rate for a global batch of 256."}
    )

    def __post_init__(self) -> None:
        _at_least(self, 1, "out_dim", "head_hidden_dim", "head_layers")
        _at_least(self, 0, "predictor_hidden_dim")

    def build(self) -> ImageEncoder:
        return ImageEncoder(
            self.arch,
            cifar_stem=self.cifar_stem,
            head_hidden_dim=self.head_hidden_dim,
            out_dim=self.out_dim,
            head_layers=self.head_layers,
            head_batch_norm=self.head_batch_norm,
            head_last_batch_norm=self.head_last_batch_norm,
            channels_last=self.channels_last,
        )

    def build_predictor(self) -> ProjectionHead:
        """MoCo v3's predictor: 2 layers ``out_dim → predictor_hidden_dim → out_dim``."""
        if self.predictor_hidden_dim < 1:
            width = self.predictor_hidden_dim
            raise ValueError(f"--predictor_hidden_dim must be >= 1, got {width}")
        return ProjectionHead(self.out_dim, self.predictor_hidden_dim, self.out_dim, num_layers=2)


def load_splits(args: ImageDataArgs) -> tuple[ImageData, ImageData]:
    """Train and test `ImageData`; the kNN monitor needs labels on both."""
    # the first N are chosen before decoding: the rest are never read
    train = load_images(
        args.data, args.train_split, on_error=args.on_error, limit=args.max_train_images or None
    )
    test = load_images(
        args.data, args.test_split, on_error=args.on_error, limit=args.max_test_images or None
    )
    train.require_labels("the kNN monitor (train split)")
    test.require_labels("the kNN monitor (test split)")
    return train, test


def num_processes() -> int:
    return launch_state().num_processes


def scaled_config(config: TrainConfig, scale_lr: bool) -> TrainConfig:
    """Linear learning-rate scaling: ``lr × global batch / 256`` (SimCLR, MoCo)."""
    if not scale_lr:
        return config
    global_batch = config.batch_size * num_processes()
    return dataclasses.replace(config, lr=config.lr * global_batch / 256)


def prepare_encoder(encoder: ImageEncoder, args: ImageEncoderArgs) -> ImageEncoder:
    """SyncBatchNorm under several GPU processes; optional torch.compile of the backbone.
    Done before the method is built, so its momentum copies are made of the prepared encoder."""
    encoder = sync_batchnorm(encoder)
    if args.compile:
        encoder.backbone.compile()  # in place: state_dict keys stay the same
    return encoder


def card_preprocessing(encoder: ImageEncoder, views: ViewConfig) -> dict:
    """The model card's statement of the inputs: the size and mean/std the kNN monitor fed the
    encoder (`eval_transform` of the query views), and the size of ``features``."""
    return {
        "input_size": views.size,
        "channels": 3,
        "scaling": "RGB pixel / 255, to [0, 1]; other sizes resized (bilinear) to the input size",
        "mean": [round(float(m), 6) for m in views.mean],
        "std": [round(float(s), 6) for s in views.std],
        "feature_dim": encoder.feature_dim,
    }


def run_image_recipe(
    name: str,
    build_model: Callable[[ImageEncoder], ContrastiveModel],
    views: Callable[[int], tuple[ViewConfig, ViewConfig | None]],
    data_args: ImageDataArgs,
    encoder_args: ImageEncoderArgs,
    config: TrainConfig,
    argv: list[str] | None,
    method_args: object,
    hub: HubArgs | None = None,
    step: Step | None = None,
) -> dict:
    """Load, train with the kNN monitor, save the encoder and the pictures; return the summary.
    ``step``: the training step (`GradCacheArgs.step`; default the plain autograd step)."""
    check_output_dir(config)  # a used output_dir is refused before the data is loaded
    train, test = load_splits(data_args)
    size = data_args.image_size or train.image_size[0]
    query_views, key_views = views(size)
    global_batch = config.batch_size * num_processes()
    if global_batch > len(train):
        raise ValueError(
            f"global batch of {global_batch} images is larger than the {len(train)} training "
            "images; lower --batch_size"
        )
    torch.manual_seed(config.seed)
    encoder = prepare_encoder(encoder_args.build(), encoder_args)
    model = build_model(encoder)
    config = scaled_config(config, encoder_args.scale_lr)
    if data_args.views_on == "device":
        pairs = DeviceViewPairs(train, query_views, key_views, seed=config.seed)
    else:
        pairs = ViewPairs(train, query_views, key_views)
    monitor = KNNMonitor(
        train,
        test,
        query_views,
        k=data_args.knn_k,
        temperature=data_args.knn_temperature,
        max_train=data_args.knn_max_train,
    )
    trainer = Trainer(model, pairs, config, step=step, evaluate=lambda _: monitor(encoder))
    device = trainer.accelerator.device
    model.to(device)
    before = monitor(encoder)["knn_top1"] if trainer.accelerator.is_main_process else float("nan")
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    if not trainer.accelerator.is_main_process:
        return {}
    out = Path(config.output_dir)
    train_feats, test_feats = monitor.features(encoder)
    from multicon.eval.knn import knn_accuracy

    after = knn_accuracy(
        train_feats,
        monitor.train_labels,
        test_feats,
        monitor.test_labels,
        k=data_args.knn_k,
        temperature=data_args.knn_temperature,
    )
    evaluations = [{"epoch": 0, "knn_top1": before}] + list(result.evaluations)
    plot_knn_curve(evaluations, out / "knn_curve.png", title=f"{name}: kNN top-1")
    save_retrieval_grid(train, test, train_feats, test_feats, out / "retrievals.png")
    model_dir = out / "model"
    hub = hub or HubArgs()
    dataset = Path(data_args.data.rstrip("/")).name  # "cifar10" for a folder or a Hub name
    save_run(  # SyncBN keeps BatchNorm's state keys
        model_dir,
        encoder,
        model_name=f"{name.lower().replace(' ', '-')}-{encoder_args.arch}-{dataset}",
        method_tags=[name.split()[0].lower(), "image"],
        datasets=[dataset],
        metrics={"knn_top1": after},
        baseline={"knn_top1": before},
        task="image-classification",
        split=data_args.test_split,
        hyperparameters=[method_args, data_args, encoder_args, config],
        repo_id=hub.push_to_hub or None,
        description=(
            f"A {encoder_args.arch} image encoder trained with {name}: InfoNCE between two "
            f"augmented views of each image. The kNN score is the weighted vote (k "
            f"{data_args.knn_k}, temperature {data_args.knn_temperature}) of the nearest "
            "training images in `model.features` space."
        ),
        preprocessing=card_preprocessing(encoder, query_views),
    )
    samples = [h["samples_per_s"] for h in result.history if "samples_per_s" in h]
    summary = {
        "method": name,
        "knn_top1_random_init": round(before, 4),
        "knn_top1": round(after, 4),
        "knn_curve": [{k: e[k] for k in ("epoch", "knn_top1") if k in e} for e in evaluations],
        "steps": result.global_step,
        "final_loss": round(result.loss, 4),
        "train_seconds": round(seconds, 1),
        "samples_per_s_last": round(samples[-1], 1) if samples else None,
        "train_images": len(train),
        "test_images": len(test),
        "skipped_images": len(train.skipped) + len(test.skipped),
        "views_on": data_args.views_on,
        "device": str(device),
        "processes": trainer.accelerator.num_processes,
        "lr_used": config.lr,
        "model_dir": str(model_dir),
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "method_args": dataclasses.asdict(method_args),
        "query_views": query_views.to_dict(),
    }
    summary["push"] = hub.push_outcome(model_dir)  # a failed upload is recorded, not raised
    summary["hub_commit"] = (summary["push"] or {}).get("commit")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "query_views"}, indent=2))
    return summary
