"""Image–caption corpora: a JSON-lines file beside an image folder, or a `datasets` dataset.

Both give a `CaptionCorpus`: ``len(corpus)`` images, ``corpus.image(i)`` (an RGB PIL image) and
``corpus.captions[i]`` (its non-empty captions). Bad entries are skipped and counted in
``corpus.skipped`` (or raise, with ``on_error="raise"``): a missing image file, an image that
cannot be decoded, an image with no non-empty caption; empty captions of an otherwise good image
are dropped and counted too.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from multicon.data.parquet import check_parquet_files


def check_on_error(on_error: str) -> None:
    """Refuse an ``on_error`` other than ``"skip"`` or ``"raise"``."""
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")


#: why a record was bad, as raised with ``on_error="raise"``
PROBLEMS = {
    "missing_image": "image file not found",
    "unreadable_image": "image cannot be decoded",
    "missing_caption": "caption file not found",
    "no_caption": "no non-empty caption",
}


def bad_record(reason: str, where: str) -> Exception:
    """The exception ``on_error="raise"`` raises for a bad record at ``where`` (file:line/key)."""
    err = FileNotFoundError if reason.startswith("missing_") else ValueError
    return err(f"{where}: {PROBLEMS[reason]}")


def clean_captions(raw: Any, where: str, skipped: Counter) -> list[str]:
    """Non-empty, stripped captions from a string or a list of strings; counts empty ones."""
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list | tuple) or not all(isinstance(c, str) for c in raw):
        raise ValueError(f"{where}: captions must be a string or a list of strings, got {raw!r}")
    kept = [c.strip() for c in raw if c.strip()]
    if len(kept) < len(raw):
        skipped["empty_caption"] += len(raw) - len(kept)
    return kept


def check_image(source: str | Path | bytes) -> str | None:
    """Why ``source`` (a path or encoded bytes) is not a readable image, or None if it is."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            im.load()  # decode fully: a truncated file passes verify() but fails here
    except FileNotFoundError:
        return "missing_image"
    except (OSError, SyntaxError, ValueError):
        return "unreadable_image"
    return None


class CaptionCorpus(ABC):
    """Images with their captions. Subclasses implement `_load_image`."""

    captions: list[list[str]]
    skipped: Counter

    def __len__(self) -> int:
        return len(self.captions)

    @abstractmethod
    def _load_image(self, index: int) -> Image.Image: ...

    def image(self, index: int) -> Image.Image:
        """Image ``index`` as RGB."""
        return self._load_image(index).convert("RGB")

    def flat_captions(self) -> tuple[list[str], list[int]]:
        """Every caption, and the index of the image it describes (for retrieval evaluation)."""
        texts = [c for caps in self.captions for c in caps]
        owners = [i for i, caps in enumerate(self.captions) for _ in caps]
        return texts, owners

    def image_bytes(self, index: int) -> bytes:
        """Image ``index`` encoded as a file (its original bytes where the source keeps them)."""
        buf = io.BytesIO()
        self._load_image(index).save(buf, "PNG")
        return buf.getvalue()

    def _record(self, reason: str, where: str, on_error: str) -> None:
        if on_error == "raise":
            raise bad_record(reason, where)
        self.skipped[reason] += 1


class CaptionFolder(CaptionCorpus):
    """Lines ``{"image": path, "captions": [...]}`` of a JSON-lines file; paths are relative to
    ``image_root`` (default: the file's folder), as in Flickr8k-1k.

    Example:
        >>> import json, tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = Path(tmp.name)
        >>> Image.new("RGB", (8, 8), "red").save(d / "a.png")
        >>> lines = [{"image": "a.png", "captions": ["red", " "]},
        ...          {"image": "gone.png", "captions": ["x"]}]
        >>> _ = (d / "train.jsonl").write_text("\\n".join(json.dumps(x) for x in lines))
        >>> corpus = CaptionFolder(d / "train.jsonl")
        >>> len(corpus), corpus.captions, dict(corpus.skipped)
        (1, [['red']], {'empty_caption': 1, 'missing_image': 1})
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        jsonl: str | Path,
        image_root: str | Path | None = None,
        *,
        check_images: bool = True,
        on_error: str = "skip",
    ) -> None:
        check_on_error(on_error)
        jsonl = Path(jsonl)
        if not jsonl.is_file():
            raise FileNotFoundError(f"caption file {jsonl} does not exist")
        root = Path(image_root) if image_root is not None else jsonl.parent
        self.paths: list[Path] = []
        self.captions = []
        self.skipped = Counter()
        for lineno, raw in enumerate(jsonl.read_bytes().splitlines(), 1):
            where = f"{jsonl}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                reason = f"{err.reason} at byte {err.start}"
                raise ValueError(f"{where}: not UTF-8 text ({reason})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
            if not isinstance(row, dict) or "image" not in row or "captions" not in row:
                raise ValueError(f"{where}: each line needs 'image' and 'captions' keys")
            path = root / row["image"]
            captions = clean_captions(row["captions"], where, self.skipped)
            problem = check_image(path) if check_images else None
            if problem is None and not path.exists():
                problem = "missing_image"
            if problem is None and not captions:
                problem = "no_caption"
            if problem is not None:
                self._record(problem, f"{where} ({path})", on_error)
                continue
            self.paths.append(path)
            self.captions.append(captions)
        if not self.captions:
            raise ValueError(f"{jsonl} holds no usable image–caption entries: {dict(self.skipped)}")

    def _load_image(self, index: int) -> Image.Image:
        return Image.open(self.paths[index])

    def image_bytes(self, index: int) -> bytes:
        return self.paths[index].read_bytes()


class CaptionDataset(CaptionCorpus):
    """An image column and one or more caption columns (a string or a list of strings each) of a
    `datasets.Dataset`.

    Args:
        dataset: the dataset (e.g. ``load_dataset("parquet", data_dir=...)["train"]``, or an
            ``imagefolder`` with a captions column in its metadata).
        image_column: a column of `datasets.Image` type; a column of file paths must be cast
            first (``dataset.cast_column(name, datasets.Image())``).
        caption_columns: one name or several (e.g. ``["caption_0", ..., "caption_4"]``).
        check_images: decode every image once up front to skip unreadable ones.

    Example:
        >>> import io, datasets
        >>> from PIL import Image
        >>> buf = io.BytesIO(); Image.new("RGB", (8, 8), "blue").save(buf, "PNG")
        >>> ds = datasets.Dataset.from_dict(
        ...     {"image": [{"bytes": buf.getvalue(), "path": None}] * 2,
        ...      "caption": [["a blue square"], [""]]},
        ...     features=datasets.Features({"image": datasets.Image(),
        ...                                 "caption": datasets.List(datasets.Value("string"))}))
        >>> corpus = CaptionDataset(ds)
        >>> len(corpus), corpus.image(0).size, dict(corpus.skipped)
        (1, (8, 8), {'empty_caption': 1, 'no_caption': 1})
    """

    def __init__(
        self,
        dataset,
        *,
        image_column: str = "image",
        caption_columns: str | Sequence[str] = "caption",
        check_images: bool = True,
        on_error: str = "skip",
    ) -> None:
        import datasets

        check_on_error(on_error)
        cols = [caption_columns] if isinstance(caption_columns, str) else list(caption_columns)
        names = dataset.column_names
        for col in [image_column, *cols]:
            if col not in names:
                raise ValueError(f"dataset has no column {col!r}; its columns are {names}")
        feature = dataset.features[image_column]
        if not isinstance(feature, datasets.Image):
            raise ValueError(
                f"column {image_column!r} is not an image column (it holds {feature}); "
                "cast a column of file paths with dataset.cast_column(name, datasets.Image())"
            )
        self.dataset, self.image_column = dataset, image_column
        self.rows: list[int] = []
        self.captions = []
        self.skipped = Counter()
        raw = dataset.cast_column(image_column, datasets.Image(decode=False))
        self._encoded = raw  # the same rows, images as {bytes, path}: for `image_bytes`
        for row, example in enumerate(raw.select_columns([image_column, *cols])):
            where = f"row {row}"
            captions = [
                c for col in cols for c in clean_captions(example[col], where, self.skipped)
            ]
            problem = None
            if check_images:
                ref = example[image_column]
                problem = check_image(ref["bytes"] if ref.get("bytes") else ref.get("path") or b"")
            if problem is None and not captions:
                problem = "no_caption"
            if problem is not None:
                self._record(problem, where, on_error)
                continue
            self.rows.append(row)
            self.captions.append(captions)
        if not self.captions:
            raise ValueError(f"dataset holds no usable image–caption rows: {dict(self.skipped)}")

    def _load_image(self, index: int) -> Image.Image:
        return self.dataset[self.rows[index]][self.image_column]

    def image_bytes(self, index: int) -> bytes:
        ref = self._encoded[self.rows[index]][self.image_column]
        return ref["bytes"] if ref.get("bytes") else Path(ref["path"]).read_bytes()


def load_caption_dataset(
    path: str,
    *,
    split: str = "train",
    image_column: str = "image",
    caption_columns: str | Sequence[str] = "caption",
    check_images: bool = True,
    on_error: str = "skip",
    **load_kwargs: Any,
) -> CaptionDataset:
    """`datasets.load_dataset(path, split=split, **load_kwargs)` as a `CaptionDataset`.

    ``path`` is a Hub name when online, or a builder such as ``"parquet"`` / ``"imagefolder"``
    with ``data_dir=...`` offline.
    """
    from datasets import load_dataset

    for folder in (load_kwargs.get("data_dir"), path):  # local parquet files: named if bad
        if folder and Path(folder).is_dir():
            check_parquet_files(folder)
    dataset = load_dataset(path, split=split, **load_kwargs)
    return CaptionDataset(
        dataset,
        image_column=image_column,
        caption_columns=caption_columns,
        check_images=check_images,
        on_error=on_error,
    )
