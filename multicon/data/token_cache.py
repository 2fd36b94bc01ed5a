"""A corpus's token ids in memory-mapped files on disk, built once and reused.

A cache is a folder holding the vocabulary and the encoded corpus:

* ``vocab.txt``: the vocabulary (`Vocabulary.save`), ids are line numbers;
* ``ids.int32``: every in-vocabulary token id, sentences back to back (4 bytes a token);
* ``offsets.int64``: where each sentence starts in ``ids.int32``, then the token count;
* ``meta.json``: what the cache was built from (its *key*: the corpus's identity, the tokenizer,
  the vocabulary settings) and the lengths of the files. Written last.

The corpus is read once: each sentence is encoded as it streams past (a file, or a `datasets`
`IterableDataset`) and appended to the files, so memory does not grow with the corpus. Words get
provisional ids in order of first sight; once the pass has counted them, the vocabulary is cut
(``min_count``, ``max_size``) and the id file is rewritten with the final ids block by block,
dropping out-of-vocabulary words and sentences left empty: the result equals `encode_corpus`.

The folder is built under a temporary name beside it and renamed into place, so a run stopped
half way never leaves a cache that looks complete. A folder whose key differs from the one asked
for is refused (a ValueError naming its ``meta.json``), never silently used: delete it or choose
another folder.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multicon.progress import progress as progress_bar
from multicon.text.vocab import Vocabulary

FORMAT = "multicon-token-cache"
VERSION = 1
_BLOCK = 1 << 20  # tokens written or rewritten at a time


class MappedArray:
    """A read-only 1-d integer array in a file, read by range through short-lived memory maps.

    Each read maps only the pages it needs and unmaps them when done, so reading the whole array
    block by block never makes it resident at once (a single long-lived map would keep every
    page it touched counted in the process's resident memory).

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> np.arange(10, dtype=np.int32).tofile(Path(tmp.name) / "a.int32")
        >>> a = MappedArray(Path(tmp.name) / "a.int32", "int32")
        >>> len(a), a[3:6].tolist(), int(a[-1]), a.searchsorted(4, right=True)
        (10, [3, 4, 5], 9, 5)
        >>> tmp.cleanup()
    """

    def __init__(self, path: str | Path, dtype: str) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        if not self.path.is_file():
            raise FileNotFoundError(f"token cache file not found: {self.path}")
        size = self.path.stat().st_size
        if size % self.dtype.itemsize:
            raise ValueError(f"{self.path}: {size} bytes is not a whole number of {dtype} values")
        self.length = size // self.dtype.itemsize
        self._file = None  # opened on first read (and again in a child process)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}

    def __len__(self) -> int:
        return self.length

    def memmap(self) -> np.memmap:
        """The whole file as one read-only `numpy.memmap`."""
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(self.length,))

    def __getitem__(self, key: int | slice) -> torch.Tensor:
        """A copy of a range (a contiguous slice) as a tensor, or one value as a 0-d tensor."""
        if isinstance(key, slice):
            start, stop, step = key.indices(self.length)
            if step != 1:
                raise ValueError("MappedArray reads contiguous ranges only (step 1)")
            if stop <= start:
                return torch.from_numpy(np.empty(0, dtype=self.dtype))
            return torch.from_numpy(self._read(start, stop))
        i = int(key) + (self.length if int(key) < 0 else 0)
        if not 0 <= i < self.length:
            raise IndexError(f"index {key} out of range for {self.length} values")
        return self[i : i + 1][0]

    def _read(self, start: int, stop: int) -> np.ndarray:
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 -- lives with the array
        item = self.dtype.itemsize
        begin = start * item - (start * item) % mmap.ALLOCATIONGRANULARITY  # maps start there
        with mmap.mmap(
            self._file.fileno(), stop * item - begin, offset=begin, access=mmap.ACCESS_READ
        ) as mapped:
            view = np.frombuffer(mapped, self.dtype, stop - start, start * item - begin)
            out = view.copy()
            del view  # the map cannot close while a view of it exists
        return out

    def searchsorted(self, value: int, *, right: bool = False) -> int:
        """`numpy.searchsorted` on the (sorted) array: touches O(log n) pages only."""
        if self.length == 0:
            return 0
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 -- lives with the array
        with mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = np.frombuffer(mapped, self.dtype, self.length)
            at = int(np.searchsorted(view, value, side="right" if right else "left"))
            del view
        return at

    def __repr__(self) -> str:
        return f"MappedArray({str(self.path)!r}, {self.dtype}, {self.length} values)"


def file_identity(path: str | Path) -> dict[str, Any]:
    """A corpus file's identity for a cache key: resolved path, size and modification time."""
    path = Path(path).resolve()
    st = path.stat()
    return {"file": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def dataset_identity(dataset: Any, name: str | None = None) -> dict[str, Any]:
    """A `datasets` corpus's identity for a cache key.

    A `Dataset` has a content fingerprint. A streaming `IterableDataset` has none (hashing its
    content would mean streaming it all), so it is named by ``name`` (the Hub id or path it was
    loaded from) with its config, version and split: a dataset changed in place under the same
    name and version is not noticed.
    """
    fingerprint = getattr(dataset, "_fingerprint", None)
    if fingerprint:
        return {"dataset_fingerprint": str(fingerprint)}
    if not name:
        raise ValueError(
            "a streaming dataset has no content fingerprint: pass its name (the Hub id or path "
            "it was loaded from) to key its token cache"
        )
    info = getattr(dataset, "info", None)
    return {
        "dataset": name,
        "config": getattr(info, "config_name", None),
        "version": str(getattr(info, "version", None)),
        "split": str(getattr(dataset, "split", None)),
    }


def default_cache_root() -> Path:
    """``$MULTICON_CACHE``, else ``$XDG_CACHE_HOME/multicon``, else ``~/.cache/multicon``."""
    if os.environ.get("MULTICON_CACHE"):
        return Path(os.environ["MULTICON_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "multicon"


def key_folder(key: dict[str, Any], root: str | Path | None = None) -> Path:
    """The folder of a key under ``root`` (`default_cache_root`): a hash of the key names it."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(root or default_cache_root()) / "token_cache" / digest


def open_cache(folder: str | Path, key: dict[str, Any]):
    """The (vocabulary, encoded corpus) of a complete cache built for ``key``, or None if absent.

    Raises:
        ValueError: the folder holds a cache built for another key, or something else.
    """
    from multicon.data.corpus import EncodedCorpus

    folder = Path(folder)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise ValueError(
                f"{folder} is not a token cache (no meta.json) but is not empty: choose another "
                "folder"
            )
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path}: not a token cache's meta.json ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: not a multicon token cache")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"{meta_path}: token cache format version {meta.get('version')}, this code reads "
            f"version {VERSION}; delete {folder} to rebuild it"
        )
    if meta["key"] != key:
        theirs, ours = meta["key"], key
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        detail = "; ".join(
            f"{k}: cache has {theirs.get(k)!r}, asked {ours.get(k)!r}" for k in differ
        )
        raise ValueError(
            f"{meta_path}: this token cache was built from another corpus, tokenizer or "
            f"vocabulary ({detail}); delete {folder} or choose another cache folder"
        )
    vocab = Vocabulary.load(folder / "vocab.txt")
    ids = MappedArray(folder / "ids.int32", "int32")
    offsets = MappedArray(folder / "offsets.int64", "int64")
    for what, have, want in (
        ("ids.int32", len(ids), meta["tokens"]),
        ("offsets.int64", len(offsets), meta["sentences"] + 1),
        ("vocab.txt", len(vocab), meta["vocab_size"]),
    ):
        if have != want:
            raise ValueError(f"{folder / what}: {have} entries, meta.json says {want}; rebuild it")
    return vocab, EncodedCorpus(ids, offsets, meta["raw_words"])


def build_cache(
    sentences: Iterable[list[str]],
    folder: str | Path,
    key: dict[str, Any],
    *,
    vocab: Vocabulary | None = None,
    min_count: int = 1,
    max_size: int | None = None,
    progress: bool = False,
):
    """Encode ``sentences`` into a cache at ``folder`` and open it; one pass over the corpus.

    Args:
        vocab: encode with this vocabulary; None: count the words in the same pass and keep
            those seen ``min_count`` times, at most ``max_size`` (`Vocabulary.from_counts`).
        progress: tqdm bars (main process only) over the words read, then over the token ids
            rewritten with the final vocabulary.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    try:
        total = getattr(sentences, "max_words", None)  # a `TextCorpus` slice knows its length
        desc = "vocabulary and token ids" if vocab is None else "token ids"
        with progress_bar(enabled=progress, total=total, desc=desc, unit="word") as bar:
            if vocab is None:
                raw, counts = _write_provisional(sentences, tmp, bar)
            else:
                raw, tokens, n_sentences = _write_encoded(sentences, vocab, tmp, bar)
        if vocab is None:
            vocab = Vocabulary.from_counts(counts, min_count=min_count, max_size=max_size)
            final = [vocab.index.get(w, -1) for w in counts]
            tokens, n_sentences = _remap(tmp, final, progress)
        if tokens == 0:
            raise ValueError(
                f"corpus has no in-vocabulary words ({raw} words read, vocabulary of {len(vocab)})"
            )
        vocab.save(tmp / "vocab.txt")
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "key": key,
            "tokens": tokens,
            "sentences": n_sentences,
            "raw_words": raw,
            "vocab_size": len(vocab),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        try:
            os.rename(tmp, folder)  # atomic; replaces the folder only if it is empty
        except OSError:
            if not (folder / "meta.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished the same cache first: use theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    opened = open_cache(folder, key)
    assert opened is not None  # just written
    return opened


def cached_encoding(
    sentences: Iterable[list[str]],
    key: dict[str, Any],
    folder: str | Path | None = None,
    *,
    vocab: Vocabulary | None = None,
    min_count: int = 1,
    max_size: int | None = None,
    progress: bool = False,
):
    """The (vocabulary, encoded corpus) of ``sentences``: from the cache when one was built for
    the same ``key`` and vocabulary, else built now (`build_cache`; ``progress``: its bars).

    Args:
        key: what identifies the corpus and its tokenization (`file_identity`,
            `dataset_identity`, the tokenizer's name, ...); JSON-serialisable. The vocabulary
            (``vocab``'s hash, or ``min_count`` and ``max_size``) is added to it.
        folder: the cache folder; it must hold the cache of the same key, or be empty or
            absent. None: `key_folder` of the key.

    Example:
        >>> import tempfile
        >>> tmp = tempfile.TemporaryDirectory()
        >>> key = {"corpus": "example", "tokenizer": "split"}
        >>> sentences = [["a", "x", "b"], ["x"], ["a"]]
        >>> vocab, enc = cached_encoding(sentences, key, Path(tmp.name) / "c", min_count=2)
        >>> vocab.words, enc.ids[:].tolist(), enc.offsets[:].tolist(), enc.raw_words
        (['a', 'x'], [0, 1, 1, 0], [0, 2, 3, 4], 5)
        >>> _, again = cached_encoding([], key, Path(tmp.name) / "c", min_count=2)  # from disk
        >>> again.ids[:].tolist()
        [0, 1, 1, 0]
        >>> tmp.cleanup()
    """
    if vocab is None:
        vocab_key: dict[str, Any] = {"min_count": min_count, "max_size": max_size}
    else:
        pairs = zip(vocab.words, vocab.counts.tolist(), strict=True)
        text = "\n".join(f"{w}\t{c}" for w, c in pairs)
        vocab_key = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
    key = {**key, "vocabulary": vocab_key}
    folder = Path(folder) if folder is not None else key_folder(key)
    opened = open_cache(folder, key)
    if opened is not None:
        return opened
    return build_cache(
        sentences,
        folder,
        key,
        vocab=vocab,
        min_count=min_count,
        max_size=max_size,
        progress=progress,
    )


# -- writing -----------------------------------------------------------------------------------
class _Appender:
    """Buffered appends of integers to a binary file."""

    def __init__(self, path: Path, dtype: str) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 -- closed in close()
        self.dtype = dtype
        self.buf: list[int] = []
        self.count = 0

    def extend(self, values: Iterable[int]) -> None:
        self.buf.extend(values)
        if len(self.buf) >= _BLOCK:
            self.flush()

    def append(self, value: int) -> None:
        self.buf.append(value)
        if len(self.buf) >= _BLOCK:
            self.flush()

    def flush(self) -> None:
        np.asarray(self.buf, dtype=self.dtype).tofile(self.f)
        self.count += len(self.buf)
        self.buf = []

    def close(self) -> int:
        self.flush()
        self.f.close()
        return self.count


def _write_provisional(
    sentences: Iterable[list[str]], tmp: Path, bar
) -> tuple[int, dict[str, int]]:
    """Every word under a provisional id (its order of first sight); returns the words read and
    each word's count, in provisional id order."""
    first_seen: dict[str, int] = {}
    ids, offsets = _Appender(tmp / "all.int32", "int32"), _Appender(tmp / "all.int64", "int64")
    offsets.append(0)
    raw = 0
    for sentence in sentences:
        if not sentence:
            continue
        ids.extend([first_seen.setdefault(w, len(first_seen)) for w in sentence])
        raw += len(sentence)
        offsets.append(raw)
        bar.update(len(sentence))
    ids.close()
    offsets.close()
    counts = np.zeros(len(first_seen), dtype=np.int64)
    all_ids = MappedArray(tmp / "all.int32", "int32")
    for start in range(0, len(all_ids), _BLOCK):
        counts += np.bincount(all_ids[start : start + _BLOCK].numpy(), minlength=len(counts))
    return raw, dict(zip(first_seen, counts.tolist(), strict=True))


def _remap(tmp: Path, final: list[int], progress: bool = False) -> tuple[int, int]:
    """Rewrite provisional ids with ``final[provisional]`` (-1: out of vocabulary, dropped),
    removing sentences left empty; block by block. Returns (tokens, sentences) written."""
    table = np.asarray(final, dtype=np.int64)
    src_ids = MappedArray(tmp / "all.int32", "int32")
    src_off = MappedArray(tmp / "all.int64", "int64")
    ids, offsets = _Appender(tmp / "ids.int32", "int32"), _Appender(tmp / "offsets.int64", "int64")
    offsets.append(0)
    written = 0
    s = 0
    n_sent = len(src_off) - 1
    bar = progress_bar(enabled=progress, total=len(src_ids), desc="final token ids", unit="word")
    while s < n_sent:
        # a run of whole sentences of about _BLOCK tokens (at least one sentence)
        start = int(src_off[s])
        e = max(src_off.searchsorted(start + _BLOCK, right=True) - 1, s + 1)
        e = min(e, n_sent)
        off = src_off[s : e + 1].numpy()
        new = table[src_ids[int(off[0]) : int(off[-1])].numpy()]
        keep = new >= 0
        label = np.repeat(np.arange(e - s), np.diff(off))
        lengths = np.bincount(label[keep], minlength=e - s)
        ids.extend(new[keep].tolist())
        for length in lengths[lengths > 0].tolist():
            written += length
            offsets.append(written)
        s = e
        bar.update(int(off[-1]) - int(off[0]))
    bar.close()
    (tmp / "all.int32").unlink()
    (tmp / "all.int64").unlink()
    tokens = ids.close()
    return tokens, offsets.close() - 1


def _write_encoded(
    sentences: Iterable[list[str]], vocab: Vocabulary, tmp: Path, bar
) -> tuple[int, int, int]:
    get = vocab.index.get
    ids, offsets = _Appender(tmp / "ids.int32", "int32"), _Appender(tmp / "offsets.int64", "int64")
    offsets.append(0)
    raw = written = 0
    for sentence in sentences:
        raw += len(sentence)
        encoded = [i for i in map(get, sentence) if i is not None]
        if encoded:
            ids.extend(encoded)
            written += len(encoded)
            offsets.append(written)
        bar.update(len(sentence))
    return raw, ids.close(), offsets.close() - 1
