"""Evaluate a saved image encoder: weighted kNN and a linear probe on frozen features (the same as
`multicon eval images`; see multicon/cli/eval_images.py).

    python tools/eval_images.py --model runs/simclr_cifar10/model --data ../shared/data/cifar10
"""

from __future__ import annotations

from multicon.cli import eval_images


def main(argv: list[str] | None = None) -> dict:
    return eval_images.main(argv, prog="tools/eval_images.py")


if __name__ == "__main__":
    main()
