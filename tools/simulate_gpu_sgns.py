"""Simulate, on the CPU, what GPU concurrency does to the fused skip-gram kernel's quality.

The Triton kernel (multicon/text/sgns_triton.py) runs ``batch / pairs_per_program`` programs at
once, each walking its ``pairs_per_program`` pairs in order. Here every program's j-th pair is
taken at the same moment: all of them read the tables, then all write. ``--write store`` keeps
one writer of a row and loses the others (plain stores, CPU hogwild's way); ``--write add`` sums
their updates (the kernel's atomic adds). Prints analogy / WS-353 / SimLex-999 as JSON.

    python tools/simulate_gpu_sgns.py --max_words 2000000 --epochs 3 --pairs_per_program 32 \\
        --write add
"""

from __future__ import annotations

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")  # before torch allocates: see the recipe

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from multicon.data.corpus import TextCorpus, encode_corpus, lowercase_words
from multicon.eval.words import evaluate_analogies, evaluate_similarity
from multicon.pairs.context import ContextPairs
from multicon.text import Vocabulary

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def simulate(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    corpus = TextCorpus.from_file(
        args.corpus, tokenizer=lowercase_words, max_words=args.max_words or None
    )
    vocab = Vocabulary.build(corpus, min_count=5)
    pairs = ContextPairs(encode_corpus(corpus, vocab), vocab.counts, window=5, sample=1e-4)
    torch.manual_seed(0)
    v, dim, negative = len(vocab), 100, 5
    inp, out = (torch.rand(v, dim) - 0.5) / dim, torch.zeros(v, dim)
    cdf = vocab.counts.double().pow(0.75)
    cdf = (cdf / cdf.sum()).cumsum(0).float()
    total = pairs.num_batches(args.batch_size) * args.epochs
    step, start, add = 0, time.perf_counter(), args.write == "add"
    for epoch in range(args.epochs):
        for batch in pairs.batches(args.batch_size, epoch=epoch, device="cpu"):
            lr = 0.025 * max(1 - step / total, 1e-4)
            centre, context, n = batch.query, batch.key, len(batch.query)
            noise = torch.searchsorted(cdf, torch.rand(n, negative) * cdf[-1], right=True)
            noise.clamp_(max=v - 1)
            targets = torch.cat([context[:, None], noise], 1)
            keep = torch.ones(n, 1 + negative)
            keep[:, 1:] = (noise != context[:, None]).float()  # word2vec skips these
            label = torch.zeros(n, 1 + negative)
            label[:, 0] = 1
            for j in range(min(args.pairs_per_program, n)):  # the j-th pair of every program
                at = torch.arange(j, n, args.pairs_per_program)
                c, t = centre[at], targets[at]
                q, k = inp[c], out[t]
                g = (label[at] - torch.sigmoid(torch.einsum("wd,wtd->wt", q, k))) * lr * keep[at]
                dq, dk = torch.einsum("wt,wtd->wd", g, k), g[:, :, None] * q[:, None, :]
                if add:
                    out.index_put_((t.reshape(-1),), dk.reshape(-1, dim), accumulate=True)
                    inp.index_put_((c,), dq, accumulate=True)
                else:  # with repeated rows, one write wins
                    out.index_put_((t.reshape(-1),), (k + dk).reshape(-1, dim))
                    inp.index_put_((c,), q + dq)
            step += 1
    analogy = evaluate_analogies(inp, vocab, args.analogies, restrict_vocab=30000)
    scores = {
        "analogy": analogy.accuracy,
        "ws353": evaluate_similarity(inp, vocab, args.wordsim).spearman,
        "simlex999": evaluate_similarity(inp, vocab, args.simlex).spearman,
    }
    return {
        "programs": max(1, args.batch_size // args.pairs_per_program),
        "seconds": round(time.perf_counter() - start),
        **{k: v if v is None else round(v, 4) for k, v in scores.items()},  # None: no answer
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(DATA / "enwiki17m" / "enwiki17m.txt.gz"))
    parser.add_argument("--max_words", type=int, default=0, help="0: the whole corpus")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=262144)
    parser.add_argument("--pairs_per_program", type=int, default=32)
    parser.add_argument("--write", choices=("add", "store"), default="add")
    evals = DATA / "word-eval"
    parser.add_argument("--analogies", default=str(evals / "questions-words.txt"))
    parser.add_argument("--wordsim", default=str(evals / "wordsim353.tsv"))
    parser.add_argument("--simlex", default=str(evals / "simlex999.txt"))
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(["python", "tools/simulate_gpu_sgns.py", *args])
    report = {"command": command, **simulate(parser.parse_args(args))}
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
