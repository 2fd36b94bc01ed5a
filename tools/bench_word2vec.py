"""multicon's word2vec against gensim on the same corpus and settings (the same as
`multicon bench word2vec`; see multicon/bench/word2vec.py). Prints JSON.

    python tools/bench_word2vec.py --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz \\
        --max_words 2000000 --epochs 3 --out runs/bench_word2vec.json
"""

from __future__ import annotations

# huge pages for torch's large buffers, read at its first allocation: the module records whether
# the caller gave THP_MEM_ALLOC_ENABLE and sets it, before it imports torch
from multicon.bench import word2vec as bench

code_version = bench.code_version


def main(argv: list[str] | None = None) -> dict:
    return bench.main(argv, prog="python tools/bench_word2vec.py")


if __name__ == "__main__":
    main()
