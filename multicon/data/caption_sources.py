"""One path, any caption form: told apart by the path, opened as the matching corpus.

=================================  ====================================================
path                               form
=================================  ====================================================
``data/train.csv``, ``.tsv``       `CaptionTable`: an image-path column + caption columns
``data/train.jsonl``               `CaptionFolder`: ``{"image": ..., "captions": [...]}``
``data/images/`` (a folder)        `CaptionTextFolder`: each image + a same-named ``.txt``
``data/shard-{0000..0099}.tar``    tar shards: streamed (`CaptionShardStream`) or indexed
                                   (`CaptionShards`)
=================================  ====================================================
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from multicon.data.caption_files import CaptionTable, CaptionTextFolder
from multicon.data.caption_stream import CaptionShardStream, StreamedCaptionPairs
from multicon.data.captions import CaptionCorpus, CaptionFolder
from multicon.data.shards import CaptionShards, is_shard_pattern

FORMS = ".csv, .tsv, .jsonl, a folder of images with .txt captions, or .tar shards"


def open_captions(
    path: str,
    *,
    image_column: str = "image",
    caption_columns: str | Sequence[str] = "caption",
    on_error: str = "skip",
    stream: bool = False,
) -> CaptionCorpus | CaptionShardStream:
    """The caption corpus at ``path``, in the form its path says (see the module docstring).

    ``image_column`` / ``caption_columns`` name a table's columns (and, for shards, the
    ``.json`` keys holding captions). Tar shards are streamed with ``stream=True`` (training)
    and indexed for random access otherwise (evaluation).

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = Path(tmp.name)
        >>> Image.new("RGB", (8, 8), "red").save(d / "a.png")
        >>> _ = (d / "a.txt").write_text("a red square")
        >>> type(open_captions(str(d))).__name__
        'CaptionTextFolder'
        >>> tmp.cleanup()
    """
    if is_shard_pattern(path):
        kwargs = {"caption_columns": caption_columns, "on_error": on_error}
        return CaptionShardStream(path, **kwargs) if stream else CaptionShards(path, **kwargs)
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"caption data {path} does not exist (expected {FORMS})")
    if p.is_dir():
        return CaptionTextFolder(p, on_error=on_error)
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return CaptionTable(
            p, image_column=image_column, caption_columns=caption_columns, on_error=on_error
        )
    if suffix == ".jsonl":
        return CaptionFolder(p, on_error=on_error)
    raise ValueError(f"cannot tell the caption form of {path}: expected {FORMS}")


def caption_pairs(
    corpus: CaptionCorpus | CaptionShardStream,
    tokenizer,
    *,
    transform: Callable,
    max_length: int | None = None,
    seed: int = 0,
    num_workers: int = 0,
    shuffle_buffer: int = 1000,
):
    """The pair generator for a corpus: `CaptionPairs` (map-style) for one held in an index,
    `StreamedCaptionPairs` for streamed shards (``seed``, ``num_workers`` and
    ``shuffle_buffer`` only apply to those; map-style ones take them from the trainer)."""
    if isinstance(corpus, CaptionShardStream):
        return StreamedCaptionPairs(
            corpus,
            tokenizer,
            transform=transform,
            max_length=max_length,
            seed=seed,
            num_workers=num_workers,
            shuffle_buffer=shuffle_buffer,
        )
    from multicon.pairs.captions import CaptionPairs

    return CaptionPairs(corpus, tokenizer, transform=transform, max_length=max_length)
