"""Benchmarks a user can run on their own machine (``multicon bench word2vec | images |
captions``): each module has ``build_parser()`` and ``main(argv)`` and prints a JSON report with
the command that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

# a checkout of the repository (code_version), or site-packages for an installed package
ROOT = Path(__file__).resolve().parents[2]


def code_version(root: str | Path = ROOT) -> dict:
    """The git commit the benchmark runs from, and whether tracked files differ from it.

    A record names the code that made it; a dirty tree means that commit alone does not
    reproduce it. Outside a git checkout (or without git) both are None.
    """
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
        )
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:  # no git on this machine
        return {"commit": None, "dirty": None}
    if commit.returncode != 0 or status.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
