"""Seconds to make one epoch of word2vec's context pairs (`ContextPairs.batches`), the C pair
loop against the tensor ops it replaces, at each ``--shuffle_blocks``.

Both give the same pairs (`tests/test_context_pairs.py`); only their time differs. Each round
runs every (shuffle_blocks, path) in turn on one thread, so a change in the machine's load falls
on all of them alike; the JSON on stdout holds the command, the commit and every round.

    python tools/bench_pairs.py --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz \\
        --max_words 10000000 --shuffle_blocks 4,16 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from multicon.bench import code_version
from multicon.pairs import context
from multicon.recipes.word2vec import CorpusArgs, load_encoded


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", required=True, help="a text file (.gz ok), as the recipe reads")
    p.add_argument("--max_words", type=int, default=0, help="read only this many words (0: all)")
    p.add_argument("--tokenizer", default="whitespace")
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--sample", type=float, default=1e-4)
    p.add_argument("--batch_size", type=int, default=32768)
    p.add_argument(
        "--shuffle_blocks", type=_widths, default="4,16", help="comma-separated group widths"
    )
    p.add_argument("--repeats", type=int, default=3)
    return p.parse_args(argv)


def _widths(text: str) -> list[int]:
    """``"4,16"`` → ``[4, 16]``; argparse names the flag in the error of anything else."""
    try:
        widths = [int(w) for w in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"comma-separated whole numbers, got {text!r}") from None
    if min(widths) < 1:
        raise argparse.ArgumentTypeError(f"widths must be at least 1, got {text!r}")
    return widths


def epoch_seconds(pairs: context.ContextPairs, batch_size: int, native: bool) -> float:
    """One epoch of batches, through the C loop or (``native`` False) the tensor ops."""
    use = context._native_pairs
    if not native:
        context._native_pairs = lambda: None
    try:
        start = time.perf_counter()
        for _ in pairs.batches(batch_size, epoch=0, device="cpu"):
            pass
        return time.perf_counter() - start
    finally:
        context._native_pairs = use


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    if context._native_pairs() is None:
        raise SystemExit("the C pair loop does not build here (no C compiler): nothing to compare")
    torch.set_num_threads(1)
    vocab, encoded = load_encoded(
        CorpusArgs(corpus=args.corpus, tokenizer=args.tokenizer, max_words=args.max_words)
    )
    widths = args.shuffle_blocks
    runs: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for width in widths:
            pairs = context.ContextPairs(
                encoded, vocab.counts, window=args.window, sample=args.sample,
                shuffle_blocks=width,
            )  # fmt: skip
            for native in (True, False):
                name = f"{'c_loop' if native else 'tensor_ops'}_blocks{width}"
                runs.setdefault(name, []).append(
                    round(epoch_seconds(pairs, args.batch_size, native), 3)
                )
    report = {
        "command": " ".join(["python", *sys.argv]),
        "code": code_version(),
        "settings": vars(args),
        "corpus_words": encoded.raw_words,
        "pairs_per_epoch": pairs.num_pairs(),
        "seconds_per_epoch": runs,
        "median_seconds": {k: statistics.median(v) for k, v in runs.items()},
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
