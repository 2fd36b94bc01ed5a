"""The flags a recipe or benchmark uses to build a `DualEncoder`, and the builder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from multicon.encoders.backbones import BACKBONE_HELP, WEIGHTS_HELP, pretrained_stats
from multicon.encoders.dual import DualEncoder
from multicon.encoders.normalize import NORMALIZE_HELP, check_normalize, choose_normalization
from multicon.encoders.tokenization import (
    MIN_VOCAB_SIZE,
    load_tokenizer,
    train_sentencepiece_tokenizer,
)


@dataclass
class DualEncoderArgs:
    """Command-line flags that choose the towers, the tokenizer and the negatives."""

    pretrained: str = field(
        default="",
        metadata={
            "help": "A transformers CLIPModel or SiglipModel folder to fine-tune: its towers, "
            "projections, logit scale (and bias), tokenizer and image size/mean/std replace "
            "the tower flags (multicon.encoders.pretrained)."
        },
    )
    image_arch: str = field(
        default="resnet18",
        metadata={"help": "resnet18/34/50/101 or vit (from the --vit_* config)."},
    )
    backbone: str = field(default="", metadata={"help": BACKBONE_HELP + " Overrides --image_arch."})
    backbone_weights: str = field(default="", metadata={"help": WEIGHTS_HELP})
    normalize: str = field(default="auto", metadata={"help": NORMALIZE_HELP})
    cifar_stem: bool = field(default=False, metadata={"help": "ResNet 3x3 stride-1 stem."})
    image_norm: str = field(
        default="batch",
        metadata={"help": "ResNet normalisation: batch, or group (GroupNorm: batch-independent)."},
    )
    image_size: int = 64
    image_interpolation: str = field(
        default="",
        metadata={
            "help": "The image resize filter, in training's random crops and evaluation: bilinear "
            "(default) or bicubic (CLIP's and open_clip's). --pretrained takes its processor's."
        },
    )
    vit_patch_size: int = 8
    vit_width: int = 192
    vit_depth: int = 6
    vit_heads: int = 3
    image_weights: str = field(default="", metadata={"help": "Pretrained ViT folder or Hub id."})
    text_model: str = field(
        default="",
        metadata={"help": "Pretrained text model folder or Hub id ('' = small BERT from scratch)."},
    )
    text_width: int = 256
    text_depth: int = 4
    text_heads: int = 4
    tokenizer: str = field(
        default="",
        metadata={"help": "Tokenizer folder or Hub id ('' = text_model's, else train one)."},
    )
    tokenizer_type: str = field(default="unigram", metadata={"help": "unigram or bpe."})
    vocab_size: int = 4000
    embed_dim: int = 256
    freeze_image: bool = False
    freeze_text: bool = False
    loss: str = field(
        default="",
        metadata={
            "help": "infonce (CLIP: symmetric softmax over the batch) or siglip (Zhai et al. "
            "2023: a sigmoid per image-text pair with a learned bias; in-batch keys only); "
            "'' (default): infonce, or with --pretrained the model's own."
        },
    )
    temperature: float | None = field(
        default=None,
        metadata={
            "help": "Initial τ (logits = cosine / τ): 0.07 for infonce, 0.1 for siglip (its "
            "scale t = 1/τ starts at 10)."
        },
    )
    logit_bias: float = field(default=-10.0, metadata={"help": "siglip: the initial bias b."})
    learn_temperature: bool = field(
        default=True, metadata={"help": "false: fixed temperature (and siglip's bias)."}
    )
    queue_size: int = field(default=0, metadata={"help": "0: in-batch (CLIP); N: ALBEF queues."})
    momentum_towers: bool = field(
        default=True,
        metadata={"help": "Queued keys from momentum towers (ALBEF); false: online (XBM)."},
    )
    online_batch_keys: bool = field(
        default=False,
        metadata={"help": "With momentum towers: this step's keys online, with gradient (CLIP)."},
    )
    distill: float = field(
        default=0.0,
        metadata={"help": "With a queue and momentum towers: ALBEF's distillation weight (0.4)."},
    )
    feature_queues: bool = field(
        default=False,
        metadata={
            "help": "With a queue: a frozen tower queues its features, re-projected each step "
            "(exact keys, no momentum towers); the other direction stays in-batch."
        },
    )
    false_negative_threshold: float = field(
        default=0.0,
        metadata={
            "help": "With a pretrained --text_model: images whose captions it embeds above this "
            "cosine are not each other's negatives (0.45 for MiniLM); 0: off."
        },
    )
    key_momentum: float = field(default=0.995, metadata={"help": "EMA of the momentum towers."})
    key_momentum_final: float = field(
        default=1.0, metadata={"help": "Momentum reached at the end (cosine schedule)."}
    )

    def __post_init__(self) -> None:
        for name in ("image_size", "embed_dim", "text_width", "text_depth", "text_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise ValueError(
                f"--vocab_size must be at least {MIN_VOCAB_SIZE} (4 special tokens and one "
                f"piece), got {self.vocab_size}"
            )
        if self.queue_size < 0:
            raise ValueError(f"--queue_size must be >= 0, got {self.queue_size}")
        check_normalize(self.normalize)
        if self.image_interpolation not in ("", "bilinear", "bicubic"):
            given = self.image_interpolation
            raise ValueError(f"--image_interpolation must be bilinear or bicubic, got {given!r}")
        if self.backbone_weights and not self.backbone:
            raise ValueError("--backbone_weights loads a --backbone's weights: give --backbone")
        if self.backbone and self.image_weights:
            raise ValueError(
                "--image_weights is for --image_arch vit; with --backbone, name a pretrained "
                "folder as --backbone hf:FOLDER"
            )
        if self.pretrained:
            _check_pretrained(self)
        self.loss = self.loss or "infonce"
        if self.loss not in LOSSES:
            raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if self.loss == "siglip":
            _check_siglip(self)
        if self.temperature is None:
            self.temperature = LOSSES[self.loss]
        if self.temperature <= 0:
            raise ValueError(f"--temperature must be positive, got {self.temperature}")
        if not self.text_model:  # a pretrained text model brings its own shape
            _divides(self.text_width, "text_width", self.text_heads, "text_heads")
        if self.image_arch == "vit" and not (self.image_weights or self.backbone):
            for name in ("vit_patch_size", "vit_width", "vit_depth", "vit_heads"):
                if getattr(self, name) < 1:
                    raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}")
            _divides(self.vit_width, "vit_width", self.vit_heads, "vit_heads")
            # a ViT cuts the image into whole patches: a remainder would be silently dropped
            _divides(self.image_size, "image_size", self.vit_patch_size, "vit_patch_size")


LOSSES = {"infonce": 0.07, "siglip": 0.1}  # each loss's initial τ


def _check_siglip(args: DualEncoderArgs) -> None:
    """SigLIP scores this step's in-batch pairs: refuse the flags that add queued or momentum
    keys, naming the ones given."""
    given = [
        f"--{name} {getattr(args, name)}"
        for name in ("queue_size", "feature_queues", "distill", "online_batch_keys")
        if getattr(args, name)
    ]
    if given:
        raise ValueError(
            f"--loss siglip scores the batch's own image-text pairs; it has no momentum or "
            f"feature queues: drop {', '.join(given)} (or use --loss infonce)"
        )


def _check_pretrained(args: DualEncoderArgs) -> None:
    """--pretrained brings both towers and the tokenizer: refuse flags naming others, and take
    the model's own loss unless --loss names one."""
    from multicon.encoders.pretrained import pretrained_loss

    names = ("text_model", "image_weights", "tokenizer", "backbone", "backbone_weights")
    names += ("image_interpolation",)  # its image processor's
    given = [f"--{n}" for n in names if getattr(args, n)]
    if given:
        raise ValueError(
            f"--pretrained {args.pretrained} brings both towers, its tokenizer and its image "
            f"processor: drop {', '.join(given)}"
        )
    args.loss = args.loss or pretrained_loss(args.pretrained)


def _divides(value: int, name: str, by: int, by_name: str) -> None:
    if value % by:
        raise ValueError(f"--{name} {value} is not a multiple of --{by_name} {by}")


def tower_specs(
    args: DualEncoderArgs, *, vocab_size: int, max_length: int, pad_token_id: int = 0
) -> tuple[dict, dict]:
    """The ``(image_tower, text_tower)`` specs of a `DualEncoder` that ``args`` describe.

    A pretrained ``text_model`` / ``image_weights`` folder supplies its own config; otherwise a
    BERT of ``text_width × text_depth`` (vocabulary ``vocab_size``) and a ResNet or a ViT of
    ``vit_width × vit_depth`` are configured from the flags.
    """
    if args.backbone:
        image = {
            "kind": "backbone",
            "arch": args.backbone,
            "weights": args.backbone_weights,
            "cifar_stem": args.cifar_stem,
            "norm": args.image_norm,
        }
    elif args.image_arch == "vit":
        if args.image_norm != "batch":
            raise ValueError(
                f"--image_norm {args.image_norm} is for ResNet towers; a ViT has LayerNorm"
            )
        vit = {
            "model_type": "vit",
            "image_size": args.image_size,
            "patch_size": args.vit_patch_size,
            "hidden_size": args.vit_width,
            "num_hidden_layers": args.vit_depth,
            "num_attention_heads": args.vit_heads,
            "intermediate_size": 4 * args.vit_width,
        }
        image = {"kind": "vit", "config": args.image_weights or vit}
    else:
        image = {
            "kind": "resnet",
            "arch": args.image_arch,
            "cifar_stem": args.cifar_stem,
            "norm": args.image_norm,
        }
    bert = {
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": args.text_width,
        "num_hidden_layers": args.text_depth,
        "num_attention_heads": args.text_heads,
        "intermediate_size": 4 * args.text_width,
        "max_position_embeddings": max(64, max_length),
        "pad_token_id": pad_token_id,
        # CLIP's text transformer has no dropout (BERT's default 0.1 cost ~4% of a CPU step)
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
    }
    return image, {"config": args.text_model or bert}


def image_normalization(args: DualEncoderArgs, train) -> dict:
    """The input normalisation ``--normalize`` picks (`choose_normalization`): the pretrained
    image backbone's statistics, or those of the ``train`` corpus's images at ``--image_size``.
    """
    from multicon.encoders.normalize import corpus_stats

    if args.backbone:
        pretrained = pretrained_stats(args.backbone, args.backbone_weights)
    elif args.image_arch == "vit" and args.image_weights:
        pretrained = pretrained_stats(f"hf:{args.image_weights}")
    else:
        pretrained = None
    return choose_normalization(
        args.normalize, pretrained, lambda: corpus_stats(train, args.image_size)
    )


def build_dual_encoder(
    args: DualEncoderArgs,
    captions: Sequence[str],
    max_length: int,
    normalize: dict | None = None,
) -> DualEncoder:
    """The `DualEncoder` (with its tokenizer) that ``args`` describe.

    The tokenizer is ``args.tokenizer``, else the pretrained text model's, else a sentencepiece
    model trained on ``captions``. ``args.pretrained`` loads a transformers ``CLIPModel`` or
    ``SiglipModel`` folder instead (`multicon.encoders.pretrained.load_pretrained`).
    ``normalize``: the image normalisation (`image_normalization`; None: ImageNet's).

    Example:
        >>> args = DualEncoderArgs(text_width=32, text_depth=1, text_heads=2, embed_dim=16)
        >>> model = build_dual_encoder(args, ["a red square", "a blue circle"] * 9, 16)
        >>> model.encode_text(["a red circle"]).shape
        torch.Size([1, 16])
    """
    if args.pretrained:
        from multicon.encoders.pretrained import load_pretrained

        return load_pretrained(
            args.pretrained,
            max_length=max_length,
            freeze_image=args.freeze_image,
            freeze_text=args.freeze_text,
            learn_temperature=args.learn_temperature,
        )
    if args.tokenizer or args.text_model:
        tokenizer = load_tokenizer(args.tokenizer or args.text_model, max_length=max_length)
    else:
        tokenizer = train_sentencepiece_tokenizer(
            captions,
            vocab_size=args.vocab_size,
            model_type=args.tokenizer_type,
            max_length=max_length,
        )
    image, text = tower_specs(
        args, vocab_size=len(tokenizer), max_length=max_length, pad_token_id=tokenizer.pad_token_id
    )
    return DualEncoder.create(
        image,
        text,
        image_weights=args.image_weights or None,
        text_weights=args.text_model or None,
        tokenizer=tokenizer,
        embed_dim=args.embed_dim,
        image_size=args.image_size,
        image_interpolation=args.image_interpolation or "bilinear",
        freeze_image=args.freeze_image,
        freeze_text=args.freeze_text,
        temperature=args.temperature,
        learn_temperature=args.learn_temperature,
        normalize=normalize,
    )
