"""Upload a finished multicon run folder to the Hugging Face Hub (the same as `multicon push`).

    python tools/push_to_hub.py runs/simclr-cifar10/model your-name/simclr-cifar10 [--private]

The token comes from ``HF_TOKEN`` or ``hf auth login``. See multicon/cli/push.py.
"""

from __future__ import annotations

import sys

from multicon.cli import push


def main(argv: list[str] | None = None) -> int:
    return push.main(argv, prog="push_to_hub")


if __name__ == "__main__":
    sys.exit(main())
