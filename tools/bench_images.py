"""Images/s of a SimCLR training step three ways (the same as `multicon bench images`; see
multicon/bench/images.py). Prints JSON.

    python tools/bench_images.py --device cpu --image_size 16 --batch_size 32 --steps 5 \\
        --num_workers 1 --cifar_stem false     # the tiny CPU check
"""

from __future__ import annotations

from multicon.bench import images as bench


def main(argv: list[str] | None = None) -> dict:
    return bench.main(argv, prog="tools/bench_images.py")


if __name__ == "__main__":
    main()
