"""Convert captions in JSON lines (or any form `--train_data` takes) or a `datasets` source to
WebDataset-style tar shards, with the ``sizes.json`` that gives the samples in each.

    python tools/captions_to_shards.py --input ../shared/data/flickr8k-1k/train.jsonl \
        --output_dir data/flickr-shards --samples_per_shard 1000
    python tools/captions_to_shards.py --dataset parquet --data_dir my_parquet --split train \
        --image_column image --caption_columns caption_0 caption_1 --output_dir data/shards

Prints (and returns) the brace pattern to pass as ``--train_data``. Bad records are skipped and
counted (``--on_error raise`` stops at the first, naming it); images are copied byte for byte
when JPEG, PNG or WebP, else re-encoded as PNG.
"""

from __future__ import annotations

import argparse
import json

from multicon.data.caption_sources import open_captions
from multicon.data.captions import load_caption_dataset
from multicon.data.shards import is_shard_pattern, write_shards


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", help="A .jsonl, .csv, .tsv file or a folder of images + .txt.")
    source.add_argument("--dataset", help="A `datasets` source: 'parquet', 'imagefolder', a name.")
    parser.add_argument("--data_dir", default="", help="data_dir for --dataset.")
    parser.add_argument("--split", default="train", help="Split of --dataset.")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--caption_columns", nargs="+", default=["caption"])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--samples_per_shard", type=int, default=1000)
    parser.add_argument("--prefix", default="shard", help="Shard file names: PREFIX-0000.tar.")
    parser.add_argument("--on_error", choices=["skip", "raise"], default="skip")
    args = parser.parse_args(argv)
    columns = {"image_column": args.image_column, "caption_columns": args.caption_columns}
    if args.dataset:
        kwargs = {"data_dir": args.data_dir} if args.data_dir else {}
        corpus = load_caption_dataset(
            args.dataset, split=args.split, on_error=args.on_error, **columns, **kwargs
        )
    elif is_shard_pattern(args.input):
        raise ValueError(f"--input {args.input} is already tar shards")
    else:
        corpus = open_captions(args.input, on_error=args.on_error, **columns)
    pattern = write_shards(
        corpus, args.output_dir, samples_per_shard=args.samples_per_shard, prefix=args.prefix
    )
    print(json.dumps({"shards": pattern, "samples": len(corpus), "skipped": dict(corpus.skipped)}))
    return pattern


if __name__ == "__main__":
    main()
