"""Image datasets decoded once into one uint8 tensor ``(N, 3, H, W)`` plus labels.

Small datasets (CIFAR-10 is 150 MB as uint8) are decoded once and can then live on the training
device, where `multicon.pairs.DeviceViewPairs` makes views without CPU workers. Three sources:

* `load_cifar`: CIFAR-10/100's python pickles (a local root; download only when asked), read by
  an unpickler that builds only arrays, lists, dicts and text: other pickles are refused;
* `load_hf_images`: anything `datasets` reads: a local folder of parquet files in the Hub layout
  (e.g. ``../shared/data/cifar10``: columns ``img {bytes, path}``, ``label``), a Hub name when
  online, or a loaded `datasets.Dataset`;
* `load_image_folder`: any folder of image files, one sub-folder per class (or none).

Unreadable images are either an error naming the file (``on_error="raise"``, the default) or
skipped and counted in `ImageData.skipped` (``on_error="skip"``).
"""

from __future__ import annotations

import builtins
import importlib
import io
import os
import pickle
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from multicon.data.parquet import check_parquet_files
from multicon.progress import progress as progress_bar

OnError = Literal["raise", "skip"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
#: PIL modes converted to RGB; others (16-bit, float) have no faithful 8-bit RGB form.
RGB_CONVERTIBLE = ("RGB", "L", "LA", "RGBA", "P", "PA", "CMYK", "YCbCr", "1")


@dataclass
class ImageData:
    """Decoded images and their labels.

    Args:
        images: uint8 ``(N, 3, H, W)``.
        labels: int64 ``(N,)`` or ``None`` when the source has no labels.
        classes: class names indexed by label, when known.
        skipped: names of the images that could not be read (``on_error="skip"``).

    Example:
        >>> import torch
        >>> data = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4))
        >>> len(data), data.image_size
        (4, (8, 8))
    """

    images: torch.Tensor
    labels: torch.Tensor | None = None
    classes: list[str] | None = None
    skipped: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(
                f"images must be a uint8 tensor (N, 3, H, W), got "
                f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}"
            )
        if x.shape[1] != 3:
            raise ValueError(f"images must have 3 channels (RGB), got shape {tuple(x.shape)}")
        if self.labels is not None:
            self.labels = torch.as_tensor(self.labels, dtype=torch.long)
            if self.labels.shape != (len(x),):
                raise ValueError(f"{len(x)} images but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    def require_labels(self, purpose: str = "this evaluation") -> torch.Tensor:
        """The labels, or a ValueError saying that ``purpose`` needs them."""
        if self.labels is None:
            raise ValueError(
                f"{purpose} needs class labels, but this dataset has none; load a labelled "
                "split (a label column, or one sub-folder per class)"
            )
        return self.labels

    def subset(self, index: torch.Tensor | slice) -> ImageData:
        labels = None if self.labels is None else self.labels[index]
        return ImageData(self.images[index], labels, self.classes)


def decode_image(
    data: bytes | str | os.PathLike, name: str, size: int | tuple[int, int] | None = None
) -> torch.Tensor:
    """Decode one image (bytes or a path) to uint8 ``(3, H, W)``, resized to ``size`` if given.

    Raises ValueError naming ``name`` when the file cannot be decoded or has a mode without
    a faithful RGB form.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        src = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        with Image.open(src) as img:
            img.load()
            if img.mode not in RGB_CONVERTIBLE:
                raise ValueError(
                    f"image {name} has mode {img.mode!r}, which has no faithful 8-bit RGB form"
                )
            img = img.convert("RGB")
            if size is not None:
                hw = (size, size) if isinstance(size, int) else tuple(size)
                img = img.resize((hw[1], hw[0]), Image.Resampling.BICUBIC)
            arr = np.asarray(img, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError) as err:
        raise ValueError(f"cannot decode image {name}: {err}") from err
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def stack_images(
    items: Iterable[tuple[str, Any, int | None]],
    *,
    size: int | tuple[int, int] | None = None,
    on_error: OnError = "raise",
    classes: list[str] | None = None,
    limit: int | None = None,
    progress: bool = False,
    total: int | None = None,
) -> ImageData:
    """Decode ``(name, bytes_or_path, label)`` items into one `ImageData`.

    All images must share one size unless ``size`` resizes them; the first image that differs
    is named in the error. With ``limit``, decoding stops at that many readable images: later
    items are never read (``items`` may be a lazy iterator). ``progress``: a tqdm bar (main
    process only) counting decoded items, out of ``total`` when known.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1 or None, got {limit}")
    images, labels, skipped = [], [], []
    first: tuple[str, tuple[int, int]] | None = None

    def decode(item: tuple[str, Any, int | None]) -> torch.Tensor | ValueError:
        try:
            return decode_image(item[1], item[0], size)
        except ValueError as err:
            return err

    # PIL releases the GIL while decoding: threads give a near-linear speed-up, results in order
    from concurrent.futures import ThreadPoolExecutor

    pending = iter(items)
    if limit is not None:
        total = min(total, limit) if total is not None else limit
    bar = progress_bar(enabled=progress, total=total, desc="decoding images", unit="img")
    with bar, ThreadPoolExecutor(max_workers=max(1, min(16, os.cpu_count() or 1))) as pool:
        while limit is None or len(images) < limit:
            # take only as many items as images are still wanted (more after skips)
            chunk = list(islice(pending, 1 << 14 if limit is None else limit - len(images)))
            if not chunk:
                break
            for (name, _, label), img in zip(
                chunk, pool.map(decode, chunk, chunksize=256), strict=True
            ):
                if isinstance(img, ValueError):
                    if on_error == "raise":
                        raise img
                    skipped.append(name)
                    continue
                hw = tuple(img.shape[-2:])
                if first is None:
                    first = (name, hw)
                elif hw != first[1]:
                    raise ValueError(
                        f"image {name} is {hw[0]}x{hw[1]} but {first[0]} is {first[1][0]}x"
                        f"{first[1][1]}; pass size=... to resize every image to one size"
                    )
                images.append(img)
                labels.append(label)
            bar.update(len(chunk))
    if not images:
        raise ValueError(f"no readable images (skipped {len(skipped)})")
    has_labels = all(lab is not None for lab in labels)
    return ImageData(
        torch.stack(images),
        torch.tensor(labels, dtype=torch.long) if has_labels else None,
        classes,
        skipped,
    )


# -- CIFAR python pickles -------------------------------------------------------------------------
def load_cifar(
    root: str | os.PathLike,
    name: Literal["cifar10", "cifar100"] = "cifar10",
    split: Literal["train", "test"] = "train",
    *,
    download: bool = False,
) -> ImageData:
    """CIFAR-10/100 from the python pickles under ``root`` (torchvision's file layout).

    Each file is unpickled by `read_cifar_pickle`, which builds only what CIFAR batches hold
    (numpy arrays, lists, dicts, strings, bytes) and refuses anything else, so a crafted file
    runs no code. Files are checked for presence (not for the official checksums, so re-packed
    or sub-sampled copies in the same format load too); ``download=True`` fetches the official
    archive (checksummed) through torchvision.
    """
    import torchvision

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    classes = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}
    if name not in classes:
        raise ValueError(f"name must be 'cifar10' or 'cifar100', got {name!r}")
    cls = classes[name]
    root = Path(root).expanduser()
    folder = root / cls.base_folder
    batches = [f for f, _ in (cls.train_list if split == "train" else cls.test_list)]
    needed = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    if download and not all((folder / f).is_file() for f in needed):
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    if not all((folder / f).is_file() for f in needed):
        raise FileNotFoundError(
            f"no {name} python pickles in {folder} (expected "
            f"{', '.join(f for f, _ in cls.train_list + cls.test_list)}); "
            "pass download=True to fetch them"
        )
    data, labels = [], []
    for file in batches:
        path = folder / file
        entry = read_cifar_pickle(path)
        try:
            rows = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            targets = entry["labels"] if "labels" in entry else entry["fine_labels"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{path} is not a CIFAR batch (a dict with 'data' of N x 3072 bytes and "
                f"'labels' or 'fine_labels'): {err!r}"
            ) from None
        if len(targets) != len(rows):
            raise ValueError(f"{path} has {len(rows)} images but {len(targets)} labels")
        data.append(rows)
        labels += list(targets)
    meta_path = folder / cls.meta["filename"]
    meta = read_cifar_pickle(meta_path)
    if cls.meta["key"] not in meta:
        raise ValueError(f"{meta_path} has no {cls.meta['key']!r} (the class names)")
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate(data)))
    return ImageData(images, torch.tensor(labels, dtype=torch.long), list(meta[cls.meta["key"]]))


# What CIFAR's pickles may name: numpy's array and scalar reconstruction (under numpy 1's and
# numpy 2's module names) and the builtins of plain data. Pickles name other callables to run
# them: refused.
_NUMPY_CORE = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}
_PLAIN_BUILTINS = ("list", "dict", "tuple", "bytes", "bytearray", "str", "int", "float", "bool")


class _CifarUnpickler(pickle.Unpickler):
    def __init__(self, file) -> None:
        super().__init__(file, encoding="latin1")  # the official files were pickled by Python 2

    def find_class(self, module: str, name: str) -> Any:
        package, _, submodule = module.rpartition(".")
        if package in ("numpy.core", "numpy._core") and (submodule, name) in _NUMPY_CORE:
            return _numpy_core(submodule, name)
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if (module, name) == ("_codecs", "encode"):  # bytes in protocol 2 pickles
            return _latin1_encode
        if module in ("builtins", "__builtin__") and name in _PLAIN_BUILTINS:
            return getattr(builtins, name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {pid!r}")


class _Refused(pickle.UnpicklingError):
    pass


def _numpy_core(submodule: str, name: str) -> Any:
    try:  # numpy 2 (numpy.core is its deprecated alias)
        return getattr(importlib.import_module(f"numpy._core.{submodule}"), name)
    except ImportError:  # numpy 1
        return getattr(importlib.import_module(f"numpy.core.{submodule}"), name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as protocol 2 pickles use it for bytes; no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _Refused(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


def read_cifar_pickle(path: str | os.PathLike) -> dict[str, Any]:
    """Unpickle one CIFAR python file (a batch or the meta file) into its dict, safely.

    Only what CIFAR files hold is built: numpy arrays and scalars, lists, dicts, strings, bytes
    and numbers. Any other global a pickle names (a function it would call, a class it would
    build) is refused with a `ValueError` naming the file and the global; nothing runs.

    Example:
        >>> import os, pickle, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "test_batch")
        >>> with open(path, "wb") as f:
        ...     pickle.dump({"data": np.zeros((1, 3072), np.uint8), "labels": [3]}, f)
        >>> read_cifar_pickle(path)["labels"]
        [3]
        >>> with open(path, "wb") as f:
        ...     pickle.dump({"labels": [print]}, f)
        >>> read_cifar_pickle(path)
        Traceback (most recent call last):
        ...
        ValueError: refused to unpickle .../test_batch: it names builtins.print, and a CIFAR ...
        >>> os.remove(path); os.rmdir(os.path.dirname(path))
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            content = _CifarUnpickler(file).load()
    except _Refused as refused:
        raise ValueError(
            f"refused to unpickle {path}: it names {refused}, and a CIFAR file holds only numpy "
            "arrays, lists, dicts, strings and bytes (other pickles are never loaded)"
        ) from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as err:
        raise ValueError(f"{path} is not a CIFAR python pickle: {err!r}") from None
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} is not a CIFAR file: it holds a {type(content).__name__}, not a dict"
        )
    return content


# -- datasets (parquet / Hub) ---------------------------------------------------------------------
def load_hf_images(
    source: Any,
    split: str = "train",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    size: int | tuple[int, int] | None = None,
    on_error: OnError = "raise",
    limit: int | None = None,
    progress: bool = False,
) -> ImageData:
    """Images from `datasets`: a local folder (parquet files in the Hub layout, or an
    imagefolder), a Hub dataset name, or a loaded ``datasets.Dataset``.

    The image column is found from its ``Image`` feature (or named ``img``/``image``), the label
    column from its ``ClassLabel`` feature (or named ``label``/``labels``); a dataset without a
    label column gives ``labels=None``. ``limit``: decode only the first N readable images;
    ``progress``: a tqdm bar while decoding.
    """
    import datasets

    if isinstance(source, datasets.DatasetDict):
        source = source[split]
    if isinstance(source, datasets.Dataset):
        ds, where = source, "dataset"
    else:
        path = Path(source).expanduser()
        if path.is_dir():
            files = sorted(p.suffix for p in path.rglob("*") if p.is_file())
            builder = "parquet" if ".parquet" in files else "imagefolder"
            if builder == "parquet":
                check_parquet_files(path)
            ds = datasets.load_dataset(builder, data_dir=str(path), split=split)
            where = str(path)
        elif path.exists():
            raise ValueError(f"{path} is a file; pass the folder that holds the dataset")
        else:
            ds, where = datasets.load_dataset(str(source), split=split), str(source)
    image_column = image_column or _find_column(ds, datasets.Image, ("img", "image"), where)
    if image_column not in ds.column_names:
        raise ValueError(f"no image column {image_column!r} in {where}: {ds.column_names}")
    if label_column is None:
        label_column = _find_column(ds, datasets.ClassLabel, ("label", "labels"), where, False)
    elif label_column not in ds.column_names:
        raise ValueError(f"no label column {label_column!r} in {where}: {ds.column_names}")
    classes = None
    if label_column and isinstance(ds.features[label_column], datasets.ClassLabel):
        classes = list(ds.features[label_column].names)
    if isinstance(ds.features[image_column], datasets.Image):
        ds = ds.cast_column(image_column, datasets.Image(decode=False))
    columns = [image_column] + ([label_column] if label_column else [])
    rows = ds.select_columns(columns)

    def items() -> Iterator[tuple[str, Any, int | None]]:
        for i, row in enumerate(rows):
            cell = row[image_column]
            data, name = _image_cell(cell, i, where)
            yield name, data, (int(row[label_column]) if label_column else None)

    return stack_images(
        items(),
        size=size,
        on_error=on_error,
        classes=classes,
        limit=limit,
        progress=progress,
        total=len(rows),
    )


def _find_column(ds, feature_type, names, where, required=True) -> str | None:
    for col, feat in ds.features.items():
        if isinstance(feat, feature_type):
            return col
    for col in names:
        if col in ds.column_names:
            return col
    if required:
        raise ValueError(f"cannot tell which column of {where} holds images: {ds.column_names}")
    return None


def _image_cell(cell: Any, row: int, where: str) -> tuple[Any, str]:
    if isinstance(cell, dict):
        name = f"{where} row {row}" + (f" ({cell['path']})" if cell.get("path") else "")
        if cell.get("bytes") is not None:
            return cell["bytes"], name
        if cell.get("path"):
            return cell["path"], name
        return b"", name
    if isinstance(cell, bytes | str):
        return cell, f"{where} row {row}"
    raise ValueError(f"{where} row {row}: image cell of unsupported type {type(cell)!r}")


# -- plain image folders --------------------------------------------------------------------------
def load_image_folder(
    root: str | os.PathLike,
    *,
    size: int | tuple[int, int] | None = None,
    on_error: OnError = "raise",
    limit: int | None = None,
    progress: bool = False,
) -> ImageData:
    """Every image file under ``root``; one sub-folder per class gives labels (sorted names).

    Files directly in ``root`` (no class folders) give ``labels=None``. ``limit``: decode only
    the first N readable files (in sorted order; labels still number every class folder).

    Example:
        >>> import pathlib, tempfile
        >>> from PIL import Image
        >>> tmp = tempfile.TemporaryDirectory()
        >>> root = pathlib.Path(tmp.name)
        >>> for name in ("cat", "dog"):
        ...     (root / name).mkdir()
        ...     Image.new("RGB", (8, 6), "red").save(root / name / "0.png")
        >>> data = load_image_folder(root)
        >>> data.images.shape, data.labels.tolist(), data.classes
        (torch.Size([2, 3, 6, 8]), [0, 1], ['cat', 'dog'])
        >>> tmp.cleanup()
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    class_dirs = sorted({p.relative_to(root).parts[0] for p in files if p.parent != root})
    labelled = bool(class_dirs) and all(p.parent != root for p in files)
    index = {name: i for i, name in enumerate(class_dirs)}

    def items() -> Iterator[tuple[str, Any, int | None]]:
        for p in files:
            label = index[p.relative_to(root).parts[0]] if labelled else None
            yield str(p), p, label

    return stack_images(
        items(),
        size=size,
        on_error=on_error,
        classes=class_dirs if labelled else None,
        limit=limit,
        progress=progress,
        total=len(files),
    )


def load_images(
    source: str | os.PathLike,
    split: str = "train",
    *,
    size: int | tuple[int, int] | None = None,
    on_error: OnError = "raise",
    limit: int | None = None,
    progress: bool = False,
) -> ImageData:
    """Load ``split`` of an image dataset from wherever ``source`` points, by what is there
    (with ``limit``, only the first N readable images are decoded; ``progress``: a tqdm bar
    while decoding image files):

    * a folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` → `load_cifar`;
    * a folder with parquet files (Hub layout) → `load_hf_images`;
    * a folder with ``split/`` sub-folder of images → `load_image_folder` on it;
    * any other folder of images → `load_image_folder` (``split`` ignored);
    * not a local path → a Hub dataset name for `load_hf_images` (needs a connection).
    """
    path = Path(source).expanduser()
    if not path.exists():
        if str(source).startswith((".", "/", "~")):
            raise FileNotFoundError(f"dataset folder {path} does not exist")
        return load_hf_images(
            str(source), split, size=size, on_error=on_error, limit=limit, progress=progress
        )
    if not path.is_dir():
        raise ValueError(f"{path} is a file; pass the folder that holds the dataset")
    for name, folder in (("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")):
        if (path / folder).is_dir():
            if size is not None:
                raise ValueError("CIFAR pickles are 32x32; resize views instead of the dataset")
            data = load_cifar(path, name, split)  # type: ignore[arg-type]
            if limit is None:
                return data
            # pickles hold decoded arrays: copy the first N so the rest can be freed
            images, labels = data.images[:limit].clone(), data.labels[:limit].clone()
            return ImageData(images, labels, data.classes)
    if any(path.rglob("*.parquet")):
        return load_hf_images(
            path, split, size=size, on_error=on_error, limit=limit, progress=progress
        )
    if (path / split).is_dir():
        path = path / split
    return load_image_folder(path, size=size, on_error=on_error, limit=limit, progress=progress)
