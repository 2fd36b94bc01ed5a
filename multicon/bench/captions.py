"""Samples/s of one CLIP training step (forward, backward, optimizer step, momentum/enqueue) for
an encoder pair and batch size, on synthetic images and token ids already on the device, so the
figure is the model's, not the data pipeline's. Prints JSON with the exact command.

    multicon bench captions --batch_size 64 --image_size 64
    multicon bench captions --batch_size 16 --queue_size 1024
    # on a GPU, against open_clip (when installed) for the same encoders and batch:
    multicon bench captions --image_arch vit --image_size 224 --vit_patch_size 32 \
        --vit_width 768 --vit_depth 12 --vit_heads 12 --text_width 512 --text_depth 12 \
        --text_heads 8 --vocab_size 49408 --context_length 77 --embed_dim 512 \
        --batch_size 512 --mixed_precision bf16 --open_clip_model ViT-B-32
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import torch
from transformers import HfArgumentParser

from multicon.bench import code_version
from multicon.caption_recipe import build_contrastive_model
from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs, tower_specs
from multicon.optim import build_optimizer
from multicon.pairs.base import PairBatch


@dataclass
class BenchArgs:
    batch_size: int = 64
    context_length: int = field(default=32, metadata={"help": "Tokens per caption."})
    steps: int = field(default=10, metadata={"help": "Timed steps."})
    warmup: int = field(default=3, metadata={"help": "Untimed steps first."})
    device: str = field(default="", metadata={"help": "'' = cuda when present, else cpu."})
    mixed_precision: str = field(default="no", metadata={"help": "no or bf16 (autocast)."})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)."})
    lr: float = 1e-4
    open_clip_model: str = field(
        default="", metadata={"help": "Also time this open_clip model (e.g. ViT-B-32, RN50)."}
    )
    open_clip_fused_adamw: bool = field(
        default=False,
        metadata={
            "help": "Step open_clip with torch's fused AdamW, as multicon's build_optimizer "
            "does (default: plain torch.optim.AdamW, as open_clip's training script)."
        },
    )
    multicon: bool = field(default=True, metadata={"help": "false: time open_clip only."})
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile each tower (multicon) and the model (open_clip)."},
    )


def synthetic_batch(args: BenchArgs, image_size: int, vocab_size: int, device) -> PairBatch:
    g = torch.Generator().manual_seed(0)
    b, n = args.batch_size, args.context_length
    images = torch.randn(b, 3, image_size, image_size, generator=g)
    ids = torch.randint(4, vocab_size, (b, n), generator=g)
    tokens = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return PairBatch(images, tokens, torch.arange(b)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(step, args: BenchArgs, device: torch.device) -> dict[str, float]:
    for _ in range(args.warmup):
        step()
    _sync(device)
    each = []  # each step's time too: on a shared machine the median resists a busy spell
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        _sync(device)
        each.append(time.perf_counter() - start)
    seconds = sum(each)
    return {
        "samples_per_s": round(args.steps * args.batch_size / seconds, 2),
        "step_ms": round(1000 * seconds / args.steps, 1),
        "step_ms_median": round(1000 * statistics.median(each), 1),
        "step_ms_each": [round(1000 * t, 1) for t in each],
    }


def bench_multicon(model_args: DualEncoderArgs, args: BenchArgs, device) -> dict[str, float]:
    image, text = tower_specs(
        model_args, vocab_size=model_args.vocab_size, max_length=args.context_length
    )
    model = DualEncoder.create(
        image,
        text,
        text_weights=model_args.text_model or None,
        image_weights=model_args.image_weights or None,
        embed_dim=model_args.embed_dim,
        image_size=model_args.image_size,
        freeze_image=model_args.freeze_image,
        freeze_text=model_args.freeze_text,
    )
    vocab = model.text.backbone.config.vocab_size
    cm = build_contrastive_model(model, model_args).to(device).train()
    if args.compile:  # in place: the method's modules keep holding the towers
        model.image.compile()
        model.text.compile()
    opt = build_optimizer(cm, "adamw", args.lr, weight_decay=0.05)  # the clip recipe's
    batch = synthetic_batch(args, model_args.image_size, vocab, device)
    autocast = args.mixed_precision == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = cm(batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        cm.after_step(out, progress=0.5)

    return time_steps(step, args, device)


def bench_open_clip(args: BenchArgs, image_size: int, device) -> dict[str, float]:
    """open_clip's model and ClipLoss on the same synthetic batch (random init)."""
    import open_clip

    model = open_clip.create_model(args.open_clip_model, pretrained=None).to(device).train()
    if args.compile:
        model.compile()
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(
        model.parameters(), lr=args.lr, fused=args.open_clip_fused_adamw or None
    )
    g = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch_size, 3, image_size, image_size, generator=g).to(device)
    ctx = model.context_length
    texts = torch.randint(1, model.vocab_size, (args.batch_size, ctx), generator=g).to(device)
    autocast = args.mixed_precision == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            # forward: encode_image + encode_text, normalised, and exp(logit_scale)
            image_features, text_features, scale = model(images, texts)[:3]
            loss = loss_fn(image_features, text_features, scale)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return time_steps(step, args, device)


def build_parser() -> HfArgumentParser:
    """The benchmark's flags: the model's (the clip recipe's) and the timing's."""
    return HfArgumentParser((DualEncoderArgs, BenchArgs))


def main(argv: list[str] | None = None, prog: str = "multicon bench captions") -> dict:
    """Run, print and return the JSON report; ``prog`` starts its ``command``."""
    model_args, args = build_parser().parse_args_into_dataclasses(args=argv)
    if args.mixed_precision not in ("no", "bf16"):
        raise ValueError(f"mixed_precision must be 'no' or 'bf16', got {args.mixed_precision!r}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(0)
    result = {
        "bench": "clip_training_step",
        "multicon": bench_multicon(model_args, args, device) if args.multicon else "not run",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "code": code_version(),
        "bench_args": asdict(args),
        "model_args": asdict(model_args),
    }
    if args.open_clip_model:
        try:
            result["open_clip"] = bench_open_clip(args, model_args.image_size, device)
            if args.multicon:
                ratio = result["open_clip"]["step_ms"] / result["multicon"]["step_ms"]
                result["speedup_vs_open_clip"] = round(ratio, 3)
        except ImportError:
            result["open_clip"] = "not installed (pip install open_clip_torch)"
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
