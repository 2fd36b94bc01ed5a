"""Samples/s of a CLIP/ALBEF training step (the same as `multicon bench captions`; see
multicon/bench/captions.py). Prints JSON.

    python tools/bench_captions.py --batch_size 128 --steps 20 --queue_size 4096
"""

from __future__ import annotations

from multicon.bench import captions as bench


def main(argv: list[str] | None = None) -> dict:
    return bench.main(argv, prog="python tools/bench_captions.py")


if __name__ == "__main__":
    main()
