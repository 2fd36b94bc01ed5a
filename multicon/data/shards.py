"""WebDataset-style ``.tar`` shards of image–caption samples: listing, reading, writing.

A shard is an uncompressed tar; a *sample* is a run of adjacent members sharing a key (the
member's path up to the first dot of its file name, as WebDataset groups them):
``000123.jpg`` + ``000123.txt``. The image is the ``.jpg``/``.jpeg``/``.png``/``.webp`` member;
the captions are the ``.txt`` member (one per line), else the ``.json`` member's keys named by
``caption_columns`` (a string or a list of strings each; img2dataset writes ``"caption"``).

A ``sizes.json`` beside the shards (``{"shard-0000.tar": 1000, ...}``, as open_clip reads and
`write_shards` writes) gives the samples per shard; without it each shard's tar headers are
scanned once (the image bytes are skipped, not read).

`CaptionShards` indexes shards for random access (a test split); `multicon.data.caption_stream`
streams them for training.
"""

from __future__ import annotations

import glob
import io
import json
import re
import tarfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from multicon.data.captions import CaptionCorpus, check_image, check_on_error, clean_captions

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
CAPTION_EXTENSIONS = ("txt", "json")
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def expand_braces(pattern: str) -> list[str]:
    """Every name a shell-style brace pattern stands for: ``{0000..0099}`` (zero-padded to the
    first bound's width) and ``{a,b}``, any number of groups.

    Example:
        >>> expand_braces("shard-{00..02}.tar")
        ['shard-00.tar', 'shard-01.tar', 'shard-02.tar']
        >>> expand_braces("{a,b}/{1..2}.tar")
        ['a/1.tar', 'a/2.tar', 'b/1.tar', 'b/2.tar']
    """
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
    numeric = _RANGE.match(body)
    if numeric:
        lo, hi = int(numeric.group(1)), int(numeric.group(2))
        width = len(numeric.group(1))
        step = 1 if hi >= lo else -1
        options = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        options = body.split(",")
    return [name for option in options for name in expand_braces(head + option + tail)]


def is_shard_pattern(path: str) -> bool:
    """Whether ``path`` names tar shards (a ``.tar`` file, a brace pattern or a glob)."""
    return path.endswith(".tar") or bool(_BRACE.search(path)) or glob.has_magic(path)


def list_shards(pattern: str) -> list[Path]:
    """The shard files a brace-expanded (or glob) pattern names, in order; raises when there
    are none or when a named shard is missing."""
    shards: list[Path] = []
    for name in expand_braces(pattern):
        if glob.has_magic(name):
            shards += [Path(p) for p in sorted(glob.glob(name))]
            continue
        if not Path(name).is_file():
            raise FileNotFoundError(f"shard {name} (of {pattern!r}) does not exist")
        shards.append(Path(name))
    if not shards:
        raise ValueError(f"no shard files match {pattern!r}: the shard list is empty")
    return shards


def _split_key(name: str) -> tuple[str, str]:
    """(key, extension) of a member name, split at the first dot of its file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext.lower() if dot else "")


@dataclass
class Sample:
    """One key's members: the image's bytes and extension, and the caption members' bytes."""

    key: str
    members: dict[str, bytes] = field(default_factory=dict)

    def image(self) -> tuple[str, bytes] | None:
        ext = next((e for e in IMAGE_EXTENSIONS if e in self.members), None)
        return None if ext is None else (ext, self.members[ext])


def _open_tar(path: Path, mode: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode=mode)
    except tarfile.ReadError as err:
        raise ValueError(f"{path}: not an uncompressed tar file ({err})") from err


def iter_samples(path: Path, *, read_images: bool = True) -> Iterator[Sample]:
    """The samples of one shard, in order, read sequentially. With ``read_images=False`` the
    image members are seeked over (recorded with empty bytes): a cheap pass for the captions."""
    wanted = CAPTION_EXTENSIONS + (IMAGE_EXTENSIONS if read_images else ())
    with _open_tar(path, "r:") as tar:
        current: Sample | None = None
        try:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_key(member.name)
                if current is None or key != current.key:
                    if current is not None:
                        yield current
                    current = Sample(key)
                if ext in wanted:
                    current.members[ext] = tar.extractfile(member).read()
                elif ext in IMAGE_EXTENSIONS:
                    current.members[ext] = b""
        except tarfile.TarError as err:
            raise ValueError(f"{path}: not a readable tar file ({err})") from err
        if current is not None:
            yield current


def count_samples(path: Path) -> int:
    """Samples (runs of members sharing a key) in one shard, from its headers only."""
    with _open_tar(path, "r:") as tar:
        try:
            keys = [_split_key(m.name)[0] for m in tar.getmembers() if m.isfile()]
        except tarfile.TarError as err:
            raise ValueError(f"{path}: not a readable tar file ({err})") from err
    return sum(1 for i, k in enumerate(keys) if i == 0 or k != keys[i - 1])


def shard_sizes(shards: Sequence[Path]) -> list[int]:
    """Samples per shard, from the ``sizes.json`` beside each shard when it names the shard,
    else counted from its headers."""
    sidecars: dict[Path, dict[str, int]] = {}
    out = []
    for shard in shards:
        folder = shard.parent
        if folder not in sidecars:
            sidecar, sidecars[folder] = folder / "sizes.json", {}
            if sidecar.is_file():
                try:
                    raw = json.loads(sidecar.read_text())
                    sidecars[folder] = {str(k): int(v) for k, v in raw.items()}
                except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as err:
                    msg = f"{sidecar}: not a JSON object of shard name -> count"
                    raise ValueError(msg) from err
        if shard.name in sidecars[folder]:
            _open_tar(shard, "r:").close()  # still refuse a file that is not a tar
            out.append(sidecars[folder][shard.name])
        else:
            out.append(count_samples(shard))
    return out


def sample_captions(sample: Sample, caption_columns: Sequence[str], where: str, skipped: Counter):
    """A sample's non-empty captions (``.txt`` lines, else the ``.json`` keys named), or None
    when it has no caption member."""
    if "txt" in sample.members:
        lines = sample.members["txt"].decode("utf-8", errors="replace").splitlines()
        return clean_captions(lines, where, skipped)
    if "json" in sample.members:
        try:
            meta = json.loads(sample.members["json"])
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: .json member is not valid JSON ({err.msg})") from err
        if not isinstance(meta, dict):
            raise ValueError(f"{where}: .json member must be an object, got {type(meta).__name__}")
        found = [meta[c] for c in caption_columns if c in meta]
        if not found:
            raise ValueError(
                f"{where}: .json has none of the caption keys {list(caption_columns)} (its keys "
                f"are {sorted(meta)}); name them with --caption_columns"
            )
        return [c for raw in found for c in clean_captions(raw, where, skipped)]
    return None


def check_sample(
    sample: Sample, caption_columns: Sequence[str], where: str, skipped: Counter, decode: bool
) -> tuple[str | None, list[str]]:
    """(why the sample is bad or None, its captions)."""
    captions = sample_captions(sample, caption_columns, where, skipped)
    image = sample.image()
    if image is None:
        return "missing_image", []
    if captions is None:
        return "missing_caption", []
    if decode:
        problem = check_image(image[1])
        if problem is not None:
            return problem, []
    return (None if captions else "no_caption"), captions


class CaptionShards(CaptionCorpus):
    """Tar shards indexed for random access: the captions and each image's place in its shard
    are read once; the image bytes are read when drawn. For a test split; train on large shards
    with `multicon.data.caption_stream.CaptionShardStream`.

    Example:
        >>> import io, tarfile, tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> d = Path(tmp.name)
        >>> png = io.BytesIO(); Image.new("RGB", (8, 8), "red").save(png, "PNG")
        >>> with tarfile.open(d / "shard-0.tar", "w") as tar:
        ...     for name, data in [("a.png", png.getvalue()), ("a.txt", b"red\\nall red")]:
        ...         info = tarfile.TarInfo(name); info.size = len(data)
        ...         tar.addfile(info, io.BytesIO(data))
        >>> corpus = CaptionShards(str(d / "shard-{0..0}.tar"))
        >>> corpus.captions, corpus.image(0).size
        ([['red', 'all red']], (8, 8))
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        pattern: str,
        *,
        caption_columns: str | Sequence[str] = "caption",
        check_images: bool = True,
        on_error: str = "skip",
    ) -> None:
        check_on_error(on_error)
        cols = [caption_columns] if isinstance(caption_columns, str) else list(caption_columns)
        self.shards = list_shards(pattern)
        self.places: list[tuple[int, int, int]] = []  # (shard, offset, size) of each image
        self.keys: list[str] = []
        self.captions = []
        self.skipped = Counter()
        for s, shard in enumerate(self.shards):
            for key, places, members in self._scan(shard):
                where = f"{shard}:{key}"
                sample = Sample(key, members)
                problem, captions = check_sample(sample, cols, where, self.skipped, check_images)
                if problem is not None:
                    self._record(problem, where, on_error)
                    continue
                ext, _ = sample.image()
                self.places.append((s, *places[ext]))
                self.keys.append(key)
                self.captions.append(captions)
        if not self.captions:
            bad = dict(self.skipped)
            raise ValueError(f"{pattern} holds no usable image–caption samples: {bad}")

    def _scan(self, shard: Path):
        """(key, {ext: (offset, size)}, {ext: bytes}) per sample; image bytes only when
        they are to be checked (read lazily otherwise)."""
        with _open_tar(shard, "r:") as tar:
            try:
                members = [m for m in tar.getmembers() if m.isfile()]
            except tarfile.TarError as err:
                raise ValueError(f"{shard}: not a readable tar file ({err})") from err
            current, places, data = None, {}, {}
            for m in members:
                key, ext = _split_key(m.name)
                if key != current:
                    if current is not None:
                        yield current, places, data
                    current, places, data = key, {}, {}
                if ext in CAPTION_EXTENSIONS + IMAGE_EXTENSIONS:
                    places[ext] = (m.offset_data, m.size)
                    data[ext] = tar.extractfile(m).read()
            if current is not None:
                yield current, places, data

    def _read(self, index: int) -> bytes:
        s, offset, size = self.places[index]
        with self.shards[s].open("rb") as f:
            f.seek(offset)
            return f.read(size)

    def _load_image(self, index: int) -> Image.Image:
        return Image.open(io.BytesIO(self._read(index)))

    def image_bytes(self, index: int) -> bytes:
        return self._read(index)


def image_extension(data: bytes) -> str | None:
    """The shard extension for encoded image bytes (None when re-encoding is needed)."""
    with Image.open(io.BytesIO(data)) as im:
        return {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}.get(im.format)


def write_shards(
    corpus: CaptionCorpus,
    folder: str | Path,
    *,
    samples_per_shard: int = 1000,
    prefix: str = "shard",
) -> str:
    """Write a `CaptionCorpus` as tar shards of ``samples_per_shard`` samples (image bytes as
    they are when JPEG/PNG/WebP, else re-encoded as PNG; captions one per line in ``.txt``) and
    their ``sizes.json``; return the brace pattern that names them.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> class Two(CaptionCorpus):
        ...     captions, skipped = [["red"], ["blue", "sky"]], Counter()
        ...     def _load_image(self, i): return Image.new("RGB", (4, 4), ("red", "blue")[i])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> pattern = write_shards(Two(), tmp.name, samples_per_shard=1)
        >>> pattern.endswith("shard-{0..1}.tar"), CaptionShards(pattern).captions
        (True, [['red'], ['blue', 'sky']])
        >>> tmp.cleanup()
    """
    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be at least 1, got {samples_per_shard}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = -(-len(corpus) // samples_per_shard)
    width = len(str(n_shards - 1))
    key_width = len(str(len(corpus) - 1))
    sizes = {}
    for s in range(n_shards):
        name = f"{prefix}-{s:0{width}d}.tar"
        indices = range(s * samples_per_shard, min((s + 1) * samples_per_shard, len(corpus)))
        with tarfile.open(folder / name, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in indices:
                data = corpus.image_bytes(i)
                ext = image_extension(data)
                if ext is None:
                    buf = io.BytesIO()
                    corpus.image(i).save(buf, "PNG")
                    data, ext = buf.getvalue(), "png"
                # a caption with a line break inside would read back as two
                text = "\n".join(" ".join(c.splitlines()) for c in corpus.captions[i]).encode()
                key = f"{i:0{key_width}d}"
                for member, payload in ((f"{key}.{ext}", data), (f"{key}.txt", text)):
                    info = tarfile.TarInfo(member)
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
        sizes[name] = len(indices)
    (folder / "sizes.json").write_text(json.dumps(sizes, indent=1))
    return str(folder / f"{prefix}-{{{0:0{width}d}..{n_shards - 1:0{width}d}}}.tar")
