"""`--config FILE`: a YAML or JSON file of a command's flags, and parsing that fails in one line.

A config file maps flag names (without ``--``) to values: the same flags as the command line, so
``batch_size: 256`` in the file is ``--batch_size 256``. The file's flags are read first and the
command line's after them, so a flag given on the command line wins.

Example:
    >>> import argparse, json, tempfile
    >>> from pathlib import Path
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--batch_size", type=int, default=8)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = Path(folder) / "run.json"
    ...     _ = path.write_text(json.dumps({"batch_size": 32}))
    ...     flags = config_flags(parser, path)
    >>> flags
    ['--batch_size', '32']
    >>> parse_flags(parser, [*flags, "--batch_size", "64"]).batch_size  # the command line wins
    64
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


class UsageError(Exception):
    """A command line or config file the command cannot run: printed as one line, exit code 2."""


def read_config(path: str | Path) -> dict:
    """The mapping in a ``.yaml``/``.yml`` or ``.json`` file; `UsageError` naming the file if it
    is missing, unreadable or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--config: no file {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only for YAML files

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise UsageError(f"--config {path}: not valid YAML: {_one_line(error)}") from None
    elif path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise UsageError(f"--config {path}: not valid JSON: {error}") from None
    else:
        raise UsageError(f"--config {path}: expected a .yaml, .yml or .json file")
    if data is None:  # an empty file: no flags
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise UsageError(f"--config {path}: expected a mapping of flag: value, got a {kind}")
    return data


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``--flag`` -> its action, for every optional flag except help."""
    return {
        option: action
        for action in parser._actions  # argparse keeps no public list of them
        if not isinstance(action, argparse._HelpAction)
        for option in action.option_strings
        if option.startswith("--")
    }


def config_flags(parser: argparse.ArgumentParser, path: str | Path) -> list[str]:
    """The flags in the config file at ``path`` as command-line tokens, each key and value checked
    against ``parser``'s flags (name, type, choices) so a bad one is named with its file."""
    options = _options(parser)
    tokens: list[str] = []
    for key, value in read_config(path).items():
        option = f"--{key}"
        action = options.get(option)
        if action is None or key == "config":
            raise UsageError(f"--config {path}: unknown key {key!r} (not a flag of this command)")
        tokens += _tokens(option, action, value, f"--config {path}: {key}")
    return tokens


def _tokens(option: str, action: argparse.Action, value: object, where: str) -> list[str]:
    if action.nargs == 0:  # a switch such as --no_x: true gives it, false leaves it out
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {value!r}")
        return [option] if value else []
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    if isinstance(value, dict) or (isinstance(value, list) and not many):
        raise UsageError(f"{where}: expected one value, got {value!r}")
    values = value if isinstance(value, list) else [value]
    if action.nargs == "+" and not values:
        raise UsageError(f"{where}: expected at least one value, got an empty list")
    texts = [_text(v) for v in values]
    for text, raw in zip(texts, values, strict=True):
        _check_value(action, text, raw, where)
    return [option, *texts]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return str(value)


def _check_value(action: argparse.Action, text: str, raw: object, where: str) -> None:
    """Raise `UsageError` unless the flag's type and choices accept ``text``."""
    if action.type is int and isinstance(raw, bool | float):  # int(True) and 2.5 -> "2.5" fail
        raise UsageError(f"{where}: expected an integer, got {raw!r}")
    value = text
    if callable(action.type):
        try:
            value = action.type(text)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            expected = getattr(action.type, "__name__", "a value of its type")
            expected = {"int": "an integer", "float": "a number"}.get(expected, expected)
            if "bool" in expected:
                expected = "true or false"
            raise UsageError(f"{where}: expected {expected}, got {raw!r}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise UsageError(f"{where}: {raw!r} is not one of {choices}")


def parse_flags(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_args(argv)``, raising `UsageError` (one line) instead of printing the usage
    and exiting; ``--help`` still prints the help and exits 0."""

    def error(message: str):
        raise UsageError(message)

    parser.error = error  # this parser only: argparse calls self.error for every usage error
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        flags = [a for a in unknown if a.startswith("-")]
        if flags:
            raise UsageError(f"unknown flag {flags[0]!r} (see --help)")
        raise UsageError(f"unexpected argument {unknown[0]!r} (see --help)")
    return namespace
