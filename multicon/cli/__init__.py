"""The ``multicon`` command: the recipes, evaluation, upload and benchmarks of a pip install.

    multicon --help                      # the commands, one line each
    multicon simclr --help               # a command's flags
    multicon demo --output_dir runs/digits --epochs 5
    multicon simclr --config simclr.yaml --batch_size 256   # the command line overrides the file
    multicon eval images --model runs/simclr/model --data cifar10-folder
    multicon push runs/simclr/model your-name/simclr-cifar10

Each command is a module with ``build_parser()`` and ``main(argv)``, imported only when it runs:
``multicon --help`` loads no torch, and the word2vec commands set ``THP_MEM_ALLOC_ENABLE``
before torch is first imported (see "Huge pages" in docs/word2vec.md). A usage error (unknown
command or flag, a bad config file or flag value) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from dataclasses import dataclass, field

from multicon.cli.config import UsageError, config_flags, parse_flags

# word2vec's tables: huge pages for torch's large buffers, read at torch's first allocation
HUGE_PAGES = {"THP_MEM_ALLOC_ENABLE": "1"}


@dataclass(frozen=True)
class Command:
    """A command's module (``build_parser()`` and ``main(argv)``) and its line in the help."""

    module: str
    help: str
    env: dict[str, str] = field(default_factory=dict)  # set, unless given, before the import


RECIPES = {
    "simclr": Command(
        "multicon.recipes.simclr", "train SimCLR on images (CIFAR-10 preset), kNN monitor"
    ),
    "moco": Command("multicon.recipes.moco", "train MoCo v2/v3 on images (CIFAR-10 preset)"),
    "word2vec": Command(
        "multicon.recipes.word2vec", "train word2vec (skip-gram, negative sampling)", HUGE_PAGES
    ),
    "clip": Command(
        "multicon.recipes.clip", "train a CLIP / SigLIP / ALBEF dual encoder on image captions"
    ),
    "demo": Command(
        "multicon.recipes.demo", "train SimCLR on scikit-learn's digits: offline, a CPU minute"
    ),
    "push": Command("multicon.cli.push", "upload a saved model folder to the Hugging Face Hub"),
}
GROUPS = {
    "eval": (
        "evaluate a saved model folder",
        {
            "images": Command("multicon.cli.eval_images", "kNN and linear probe of an encoder"),
            "captions": Command(
                "multicon.cli.eval_captions", "image-text retrieval recall of a dual encoder"
            ),
            "words": Command(
                "multicon.cli.eval_words", "analogies and word similarity of word2vec vectors"
            ),
        },
    ),
    "bench": (
        "time multicon against others on this machine",
        {
            "word2vec": Command(
                "multicon.bench.word2vec", "word2vec against gensim: words/s and scores"
            ),  # sets THP_MEM_ALLOC_ENABLE itself, and records whether the caller gave it
            "images": Command("multicon.bench.images", "image training steps/s by view pipeline"),
            "captions": Command(
                "multicon.bench.captions", "caption training steps/s (and open_clip's)"
            ),
        },
    ),
}
ORDER = ["simclr", "moco", "word2vec", "clip", "demo", "eval", "push", "bench"]


def main(argv: list[str] | None = None) -> int:
    """Run ``multicon ARGV``; the exit code (0, 1 for a failed upload, 2 for a usage error).

    Example:
        >>> main(["nonsense"])
        2
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = "multicon"
    try:
        if not argv or argv[0] in ("-h", "--help"):
            lines = {n: _line(n) for n in ORDER}
            print(_help(prog, "", lines), file=sys.stdout if argv else sys.stderr)
            return 0 if argv else 2
        if argv[0] == "--version":
            from multicon import __version__

            print(f"multicon {__version__}")
            return 0
        name, rest = argv[0], argv[1:]
        if name in GROUPS:
            text, commands = GROUPS[name]
            prog = f"multicon {name}"
            if not rest:
                raise UsageError(f"give one of {', '.join(commands)} (see {prog} --help)")
            if rest[0] in ("-h", "--help"):
                print(_help(prog, text, {k: c.help for k, c in commands.items()}))
                return 0
            kind, rest = rest[0], rest[1:]
            command, prog = _pick(commands, kind, prog), f"{prog} {kind}"
        else:
            command = _pick(RECIPES, name, prog)
            prog = f"multicon {name}"
        return run(command, rest, prog)
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2


def _line(name: str) -> str:
    if name in GROUPS:
        text, commands = GROUPS[name]
        return f"{text}: {name} {' | '.join(commands)}"
    return RECIPES[name].help


def _help(prog: str, text: str, lines: dict[str, str]) -> str:
    width = max(map(len, lines))
    rows = "\n".join(f"  {name:<{width}}  {line}" for name, line in lines.items())
    head = f"usage: {prog} COMMAND [flags]   ({prog} COMMAND --help lists its flags)\n"
    if text:
        head += f"\n{text[0].upper()}{text[1:]}.\n"
    tail = "\nEvery command also reads its flags from --config FILE (YAML or JSON)."
    return f"{head}\ncommands:\n{rows}\n{tail}"


def _pick(commands: dict[str, Command], name: str, prog: str) -> Command:
    if name in commands:
        return commands[name]
    choices = list(commands) if commands is not RECIPES else ORDER
    close = difflib.get_close_matches(name, choices, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    if name.startswith("-"):
        raise UsageError(f"unknown option {name!r}: {hint}give a command ({', '.join(choices)})")
    raise UsageError(f"unknown command {name!r}: {hint}choose from {', '.join(choices)}")


def split_config(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--config FILE`` (or ``--config=FILE``) taken out of ``argv``: (FILE or None, the rest).

    Example:
        >>> split_config(["--epochs", "2", "--config", "a.yaml"])
        ('a.yaml', ['--epochs', '2'])
    """
    path, rest, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 == len(argv):
                raise UsageError("--config needs a file (YAML or JSON)")
            if path is not None:
                raise UsageError("--config given twice")
            path, i = argv[i + 1], i + 2
            continue
        if arg.startswith("--config="):
            if path is not None:
                raise UsageError("--config given twice")
            path = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    return path, rest


def run(command: Command, argv: list[str], prog: str) -> int:
    """Check ``argv`` (with its ``--config`` file) against the command's flags, then run it.

    A flag value the command's dataclasses refuse (``--knn_k 0``) is a usage error too. So is an
    input error found while running: a `ValueError`, `FileNotFoundError` or `FileExistsError`
    naming a flag or a file, as multicon's checks raise (the recipes check their flags and
    output folder before any work, so nothing is written then). One line on stderr, exit code 2.
    """
    for key, value in command.env.items():
        os.environ.setdefault(key, value)  # before the command's module imports torch
    module = importlib.import_module(command.module)
    parser = module.build_parser()
    parser.prog = prog
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML or JSON file of these flags (name: value); the command line overrides it.",
    )
    path, argv = split_config(argv)
    flags = [*(config_flags(parser, path) if path else []), *argv]
    try:
        parse_flags(parser, flags)  # --help prints the flags and exits 0 here
        if hasattr(parser, "parse_args_into_dataclasses"):  # the dataclasses' own checks
            _check_dataclasses(parser, flags)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    saved_argv = sys.argv
    sys.argv = [prog, *flags]  # what a run records as its command: the config file's flags too
    try:
        result = module.main(flags)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        raise UsageError(" ".join(str(error).split())) from None
    finally:
        sys.argv = saved_argv
    if isinstance(result, dict) and (result.get("push") or {}).get("error"):
        return 1  # trained and saved, but the upload failed (its one line is printed)
    return result if isinstance(result, int) else 0


def _check_dataclasses(parser, flags: list[str]) -> None:
    import warnings

    with warnings.catch_warnings():  # the run itself warns (once) of what it skips
        warnings.simplefilter("ignore")
        try:
            parser.parse_args_into_dataclasses(args=flags)
        except (ValueError, TypeError, FileNotFoundError) as error:
            raise UsageError(" ".join(str(error).split())) from None
