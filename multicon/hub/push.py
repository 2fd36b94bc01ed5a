"""Upload a finished run folder to the Hugging Face Hub as one commit.

Everything goes through `huggingface_hub.HfApi` (create_repo, then upload_folder: preupload,
LFS upload for large files, commit). The repo id, the folder and the token are checked before
the first request, and the token is kept out of every error message.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import CommitInfo, HfApi, get_token
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from multicon import dist

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("model.safetensors", "config.json", "README.md")
# Never uploaded from a run folder: training state and pickles (the Hub copy is for users).
PUSH_IGNORE = ["checkpoint*", "checkpoint*/**", "*.pt", "*.pth", "*.bin", "*.pkl", "*.ckpt"]
PUSH_IGNORE += ["**/__pycache__/**", ".cache/**"]
# The one ``.bin`` a run folder shares: word2vec's vectors in the C binary format (gensim and
# word2vec load it), uploaded only when its header says it is one, never a renamed pickle.
WORD2VEC_BINARY = "vectors.bin"


def is_word2vec_binary(path: str | Path) -> bool:
    """Whether ``path`` starts as the word2vec C format does: ``"<words> <dim>\\n"`` in ASCII
    digits (a pickle or a zip, torch's format, starts otherwise).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder, "vectors.bin")
        ...     _ = path.write_bytes(b"3 100\\nthe ...")
        ...     good = is_word2vec_binary(path)
        ...     _ = path.write_bytes(b"\\x80\\x04\\x95 pickle")
        ...     good, is_word2vec_binary(path)
        (True, False)
    """
    with open(path, "rb") as f:
        head = f.read(64).split(b"\n", 1)[0].split(b" ")
    return len(head) == 2 and all(part.isdigit() for part in head)


def push_ignore_patterns(folder: str | Path) -> list[str]:
    """`PUSH_IGNORE` for ``folder``: every ``*.bin`` but a word2vec-format ``vectors.bin`` at
    its top (fnmatch has no "except", so the ``.bin`` files are named one by one).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     _ = Path(folder, "vectors.bin").write_bytes(b"3 100\\n")
        ...     _ = Path(folder, "optimizer.bin").write_bytes(b"\\x80\\x04")
        ...     [p for p in push_ignore_patterns(folder) if "bin" in p]
        ['optimizer.bin']
    """
    folder = Path(folder)
    patterns = [p for p in PUSH_IGNORE if p != "*.bin"]
    for path in sorted(folder.rglob("*.bin")):
        relative = path.relative_to(folder).as_posix()
        if relative != WORD2VEC_BINARY or not is_word2vec_binary(path):
            patterns.append(glob_escape(relative))
    return patterns


def glob_escape(name: str) -> str:
    """``name`` as an fnmatch pattern that matches only itself."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def check_repo_id(repo_id: str, *, or_folder: bool = False) -> None:
    """Raise `ValueError` unless ``repo_id`` is a valid Hub repository id.

    ``or_folder`` words the error for a name that was not a local folder either.

    Example:
        >>> check_repo_id("user/simclr-cifar10")
        >>> check_repo_id("user/simclr cifar10")
        Traceback (most recent call last):
        ...
        ValueError: 'user/simclr cifar10' is not a valid Hugging Face repo id: ...
    """
    what = "a local folder nor a valid" if or_folder else "a valid"
    try:
        validate_repo_id(repo_id)
        if not repo_id:
            raise HFValidationError("the repo id is empty")
    except HFValidationError as error:
        raise ValueError(f"{repo_id!r} is not {what} Hugging Face repo id: {error}") from None


def resolve_token(token: str | None) -> str:
    """``token``, else the logged-in token (``HF_TOKEN`` or ``hf auth login``); raises if none."""
    token = token or get_token()
    if not token:
        raise ValueError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` with a write token from "
            "https://huggingface.co/settings/tokens (in Python: pass token=); nothing was uploaded"
        )
    return token


class redact_token:  # noqa: N801 (used as a context manager, named as contextlib's are)
    """Re-raise any error whose message contains ``token`` as a `RuntimeError` with the token
    blanked out; other errors pass through untouched.

    The original error (its message, and often its request headers, hold the token) is kept
    nowhere: not as ``__cause__`` nor ``__context__``, nor in a local of a traceback frame.

    Example:
        >>> with redact_token("hf_secret"):
        ...     raise OSError("401 for Bearer hf_secret")
        Traceback (most recent call last):
        ...
        RuntimeError: OSError: 401 for Bearer <token>
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception) or not self.token or self.token not in str(error):
            return False
        message = f"{type(error).__name__}: {str(error).replace(self.token, '<token>')}"
        del error, traceback  # this frame stays in the new error's traceback
        try:  # raised here, the error would get the original as __context__ ...
            raise RuntimeError(message)
        except RuntimeError as redacted:
            redacted.__context__ = None  # ... so drop it, and re-raise (no new context)
            redacted.__suppress_context__ = True
            raise


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload multicon model",
    revision: str | None = None,
) -> CommitInfo:
    """Create ``repo_id`` if needed and upload a saved run folder to it in one commit.

    The folder must hold what `save_run` writes (``model.safetensors``, ``config.json``,
    ``README.md``); checkpoints and pickles in it are skipped (`push_ignore_patterns`: a
    word2vec ``vectors.bin`` is the one ``.bin`` uploaded).

    Args:
        folder: the run folder.
        repo_id: ``namespace/name`` on the Hub.
        token: a write token; default: ``HF_TOKEN`` or the ``hf auth login`` token.
        private: make a new repository private (``None``: the account's default).
        commit_message: the commit's title.
        revision: the branch to commit to (default ``main``).

    Returns:
        The `CommitInfo` (``.commit_url``, ``.oid``) of the upload.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no run folder {folder} to push")
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a finished run: it has no {', '.join(missing)} "
            "(write them with multicon.hub.save_run)"
        )
    token = resolve_token(token)
    api = HfApi(token=token)
    with redact_token(token):
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        logger.info("uploading %s to %s", folder, repo.repo_id)
        return api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            ignore_patterns=push_ignore_patterns(folder),
        )


def maybe_push(
    folder: str | Path,
    repo_id: str | None,
    *,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload multicon model",
) -> str | None:
    """`push_folder` when ``repo_id`` is set (a recipe's ``--push_to_hub``); the commit URL.

    Only rank 0 uploads when several processes run.

    Example:
        >>> maybe_push("runs/simclr", None) is None  # no --push_to_hub: nothing happens
        True
    """
    if not repo_id or dist.rank() != 0:
        return None
    info = push_folder(folder, repo_id, token=token, private=private, commit_message=commit_message)
    return info.commit_url
