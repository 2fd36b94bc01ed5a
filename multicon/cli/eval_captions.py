"""``multicon eval captions``: image-text retrieval recall (R@1/5/10 both ways) of a saved dual
encoder on a test set of captioned images. Prints the recall table and JSON with the command.

    multicon eval captions --model runs/clip-captions/model \\
        --data ../shared/data/flickr8k-1k/test.jsonl
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from transformers import HfArgumentParser

from multicon.cli.saved import model_class, require_kind


@dataclass
class CaptionEvalArgs:
    model: str = field(metadata={"help": "Folder the clip recipe saved (its model/)."})
    data: str = field(
        metadata={
            "help": "Test captions: a .csv/.tsv table, a .jsonl file, a folder of images with "
            ".txt captions, or tar shards."
        }
    )
    image_column: str = "image"
    caption_columns: list[str] = field(default_factory=lambda: ["caption"])
    on_error: Literal["skip", "raise"] = field(
        default="skip", metadata={"help": "A bad record: skip and count, or raise naming it."}
    )
    batch_size: int = 256

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch_size must be at least 1, got {self.batch_size}")


def build_parser() -> HfArgumentParser:
    """The command's flags."""
    return HfArgumentParser(CaptionEvalArgs)


def main(argv: list[str] | None = None, prog: str = "multicon eval captions") -> dict:
    """Evaluate, print and return the JSON report; ``prog`` starts its ``command``."""
    (args,) = build_parser().parse_args_into_dataclasses(args=argv)
    require_kind(args.model, "captions", prog)
    from multicon.data.caption_sources import open_captions
    from multicon.eval.retrieval import embed_corpus, retrieval_recall
    from multicon.recipes.clip import retrieval_table

    model = model_class("captions").from_pretrained(args.model)
    test = open_captions(
        args.data,
        image_column=args.image_column,
        caption_columns=args.caption_columns,
        on_error=args.on_error,
    )
    start = time.perf_counter()
    images, texts, owners = embed_corpus(model, test, batch_size=args.batch_size)
    recall = retrieval_recall(images, texts, owners)
    result = {
        "retrieval": {k: round(v, 2) for k, v in recall.items()},
        "chance_R@1": round(100.0 / len(test), 2),
        "test_images": len(test),
        "test_captions": len(owners),
        "skipped": dict(test.skipped),
        "seconds": round(time.perf_counter() - start, 2),
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "args": asdict(args),
    }
    print(retrieval_table(recall))
    print(json.dumps(result, indent=2))
    return result
