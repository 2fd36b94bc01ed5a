"""The word2vec C tool's vector files, text and binary, which gensim and most tools read.

Both start with a ``"<count> <dim>\\n"`` header; then each word is followed by its vector, as
decimal text or as ``dim`` little-endian float32s, and a newline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def save_word2vec_format(
    path: str | Path, words: list[str], vectors: torch.Tensor, *, binary: bool = False
) -> None:
    """Write ``vectors`` (``(V, D)``) for ``words`` in the word2vec format.

    Example:
        >>> import tempfile, os
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = os.path.join(folder, "v.txt")
        ...     save_word2vec_format(path, ["a", "b"], torch.eye(2))
        ...     open(path).read().splitlines()
        ['2 2', 'a 1 0', 'b 0 1']
    """
    vectors = vectors.detach().float().cpu()
    if vectors.dim() != 2 or vectors.shape[0] != len(words):
        raise ValueError(
            f"need a ({len(words)}, dim) matrix for {len(words)} words, got {tuple(vectors.shape)}"
        )
    for w in words:
        if not w or any(c.isspace() for c in w):
            raise ValueError(f"word {w!r} is empty or contains whitespace: not writable")
    array = vectors.numpy().astype("<f4")
    with open(path, "wb") as f:
        f.write(f"{len(words)} {array.shape[1]}\n".encode())
        for w, row in zip(words, array, strict=True):
            if binary:
                f.write(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
            else:
                f.write((w + " " + " ".join(f"{x:.6g}" for x in row) + "\n").encode("utf-8"))


def load_word2vec_format(
    path: str | Path, *, binary: bool = False
) -> tuple[list[str], torch.Tensor]:
    """Read a file written by `save_word2vec_format` (or word2vec / gensim)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"vector file not found: {path}")
    with open(path, "rb") as f:
        header = f.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise ValueError(f"{path}: first line must be '<count> <dim>', got {header!r}")
        count, dim = int(header[0]), int(header[1])
        words: list[str] = []
        array = np.empty((count, dim), dtype=np.float32)
        for i in range(count):
            if binary:
                word = bytearray()
                while (ch := f.read(1)) != b" ":
                    if not ch:
                        raise ValueError(f"{path}: file ends inside entry {i} of {count}")
                    if ch != b"\n":
                        word += ch
                array[i] = np.frombuffer(f.read(4 * dim), dtype="<f4")
                words.append(word.decode("utf-8"))
            else:
                parts = f.readline().decode("utf-8").rstrip().split(" ")
                if len(parts) != dim + 1:
                    raise ValueError(f"{path}: entry {i} has {len(parts) - 1} values, not {dim}")
                words.append(parts[0])
                array[i] = np.asarray(parts[1:], dtype=np.float32)
    return words, torch.from_numpy(array)
