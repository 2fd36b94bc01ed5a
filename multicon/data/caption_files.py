"""Captions as users keep them on disk: a CSV/TSV table, or images with a ``.txt`` file each.

Both are `CaptionCorpus` es, like the JSON-lines `CaptionFolder`: the table and the file names
are read up front (small), images are opened when drawn. Bad records are skipped and counted in
``corpus.skipped`` or raise naming ``file:line`` (``on_error="raise"``).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from multicon.data.captions import CaptionCorpus, check_image, check_on_error, clean_captions
from multicon.data.images import IMAGE_SUFFIXES


class CaptionTable(CaptionCorpus):
    """A ``.csv`` (comma) or ``.tsv`` (tab) file with a header: an image-path column and one or
    more caption columns, like open_clip's ``--csv-img-key`` / ``--csv-caption-key``. Paths are
    relative to the file's folder (or ``image_root``).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = Path(tmp.name)
        >>> Image.new("RGB", (8, 8), "red").save(d / "a.png")
        >>> _ = (d / "train.tsv").write_text("filepath\\ttitle\\na.png\\ta red square\\n")
        >>> corpus = CaptionTable(d / "train.tsv", image_column="filepath",
        ...                       caption_columns="title")
        >>> len(corpus), corpus.captions
        (1, [['a red square']])
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        path: str | Path,
        *,
        image_column: str = "image",
        caption_columns: str | Sequence[str] = "caption",
        image_root: str | Path | None = None,
        check_images: bool = True,
        on_error: str = "skip",
    ) -> None:
        check_on_error(on_error)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"caption table {path} does not exist")
        cols = [caption_columns] if isinstance(caption_columns, str) else list(caption_columns)
        root = Path(image_root) if image_root is not None else path.parent
        delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
        self.paths: list[Path] = []
        self.captions = []
        self.skipped = Counter()
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f, delimiter=delimiter)
            header = reader.fieldnames or []
            missing = [c for c in [image_column, *cols] if c not in header]
            if missing:
                raise ValueError(
                    f"{path}: no column {', '.join(map(repr, missing))} (its columns are "
                    f"{header}); name them with --image_column / --caption_columns"
                )
            for row in reader:
                where = f"{path}:{reader.line_num}"
                captions = [
                    c for col in cols for c in clean_captions(row[col] or "", where, self.skipped)
                ]
                image = root / (row[image_column] or "")
                problem = check_image(image) if check_images else None
                if problem is None and not image.is_file():
                    problem = "missing_image"
                if problem is None and not captions:
                    problem = "no_caption"
                if problem is not None:
                    self._record(problem, f"{where} ({image})", on_error)
                    continue
                self.paths.append(image)
                self.captions.append(captions)
        if not self.captions:
            raise ValueError(f"{path} holds no usable image–caption rows: {dict(self.skipped)}")

    def _load_image(self, index: int) -> Image.Image:
        return Image.open(self.paths[index])

    def image_bytes(self, index: int) -> bytes:
        return self.paths[index].read_bytes()


class CaptionTextFolder(CaptionCorpus):
    """Every image under a folder (sub-folders too), each with a same-named ``.txt`` file beside
    it holding its captions, one per line.

    An image without its ``.txt`` is a ``missing_caption``; a ``.txt`` without an image is a
    ``missing_image``.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = Path(tmp.name)
        >>> Image.new("RGB", (8, 8), "red").save(d / "a.jpg")
        >>> _ = (d / "a.txt").write_text("a red square\\n\\nall red\\n")
        >>> corpus = CaptionTextFolder(d)
        >>> corpus.captions, dict(corpus.skipped)
        ([['a red square', 'all red']], {'empty_caption': 1})
        >>> tmp.cleanup()
    """

    def __init__(
        self, folder: str | Path, *, check_images: bool = True, on_error: str = "skip"
    ) -> None:
        check_on_error(on_error)
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"caption folder {folder} does not exist")
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        with_image = {p.with_suffix("") for p in images}
        self.paths: list[Path] = []
        self.captions = []
        self.skipped = Counter()
        for text in (p for p in files if p.suffix == ".txt"):
            if text.with_suffix("") not in with_image:
                self._record("missing_image", f"{text} (no image of the same name)", on_error)
        for image in images:
            text = image.with_suffix(".txt")
            problem = check_image(image) if check_images else None
            captions: list[str] = []
            if problem is None and not text.is_file():
                problem = "missing_caption"
            if problem is None:
                lines = text.read_text(encoding="utf-8").splitlines()
                captions = clean_captions(lines, str(text), self.skipped)
                problem = None if captions else "no_caption"
            if problem is not None:
                where = image if problem == "unreadable_image" else text
                self._record(problem, str(where), on_error)
                continue
            self.paths.append(image)
            self.captions.append(captions)
        if not self.captions:
            if not images and any(p.suffix == ".tar" for p in files):
                raise ValueError(
                    f"{folder} holds .tar shards, not images: pass them as a pattern, e.g. "
                    f"'{folder}/shard-{{0000..0009}}.tar'"
                )
            raise ValueError(
                f"{folder} holds no image with a non-empty .txt caption file: {dict(self.skipped)}"
            )

    def _load_image(self, index: int) -> Image.Image:
        return Image.open(self.paths[index])

    def image_bytes(self, index: int) -> bytes:
        return self.paths[index].read_bytes()
