"""``multicon push FOLDER REPO_ID``: upload a saved model folder to the Hugging Face Hub.

    multicon push runs/simclr-cifar10/model your-name/simclr-cifar10 [--private]

The token comes from ``HF_TOKEN`` or ``hf auth login`` (never from the command line, where it
would end up in the shell history and the process list). Checkpoints and pickles in the folder
are not uploaded. Exit code 0 prints the commit URL; 2: bad input (nothing was sent); 1: the Hub
or the network refused the upload.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip("`"))
    parser.add_argument("folder", help="model folder: model.safetensors, config.json, README.md")
    parser.add_argument("repo_id", help="namespace/name of the Hub model repository")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    parser.add_argument("--commit_message", default="Upload multicon model")
    return parser


def main(argv: list[str] | None = None, prog: str = "multicon push") -> int:
    """Push; the exit code (0 pushed, 1 the upload failed, 2 bad input). Messages go to stderr
    as one line starting with ``prog``."""
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    from multicon.cli.saved import require_multicon_card
    from multicon.hub import check_repo_id, push_folder

    try:
        check_repo_id(args.repo_id)  # before the folder is read: nothing is sent either way
        require_multicon_card(args.folder)  # a multicon model, not any folder of model files
        info = push_folder(
            args.folder,
            args.repo_id,
            private=args.private or None,
            commit_message=args.commit_message,
        )
    except (ValueError, FileNotFoundError) as error:  # bad input: nothing was sent
        print(f"{prog}: {error}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError) as error:  # the Hub or the network said no
        print(f"{prog}: upload failed: {error}", file=sys.stderr)
        return 1
    print(info.commit_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
