"""Upload a finished multicon run folder to the Hugging Face Hub.

    python tools/push_to_hub.py runs/simclr-cifar10 your-name/simclr-cifar10 [--private]

The token comes from ``HF_TOKEN`` or ``hf auth login`` (never from the command line, where it
would end up in the shell history and the process list). Checkpoints and pickles in the folder
are not uploaded.
"""

from __future__ import annotations

import argparse
import sys

from multicon.hub import push_folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="run folder with model.safetensors, config.json, README.md")
    parser.add_argument("repo_id", help="namespace/name of the Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--commit_message", default="Upload multicon model")
    args = parser.parse_args(argv)
    try:
        info = push_folder(
            args.folder,
            args.repo_id,
            private=args.private or None,
            commit_message=args.commit_message,
        )
    except (ValueError, FileNotFoundError) as error:  # bad input: nothing was sent
        print(f"push_to_hub: {error}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as error:  # the Hub or the network said no
        print(f"push_to_hub: upload failed: {error}", file=sys.stderr)
        return 1
    print(info.commit_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
