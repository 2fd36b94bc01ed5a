"""Image loaders read the real on-disk formats, written here in miniature."""

import io
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from multicon.data import ImageData, load_cifar, load_hf_images, load_image_folder


def png_bytes(colour, size=(8, 8), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="PNG")
    return buf.getvalue()


def write_hub_parquet(folder, rows_per_split=6, corrupt_row=None):
    """The Hub layout of cifar10: img {bytes, path}, label ClassLabel, one parquet per split."""
    import datasets

    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=["red", "blue"])}
    )
    for split in ("train", "test"):
        imgs, labels = [], []
        for i in range(rows_per_split):
            label = i % 2
            data = png_bytes((200, 0, 0) if label == 0 else (0, 0, 200))
            if split == "train" and i == corrupt_row:
                data = b"not an image"
            imgs.append({"bytes": data, "path": f"{i}.png"})
            labels.append(label)
        ds = datasets.Dataset.from_dict({"img": imgs, "label": labels}, features=features)
        ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


def test_hub_parquet(tmp_path):
    write_hub_parquet(tmp_path)
    data = load_hf_images(tmp_path, "train")
    assert data.images.shape == (6, 3, 8, 8) and data.images.dtype == torch.uint8
    assert data.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert data.classes == ["red", "blue"]
    assert data.images[0, 0, 0, 0] == 200 and data.images[1, 2, 0, 0] == 200
    assert len(load_hf_images(tmp_path, "test")) == 6


def test_corrupt_rows_raise_or_skip(tmp_path):
    write_hub_parquet(tmp_path, corrupt_row=3)
    with pytest.raises(ValueError, match=r"row 3 \(3.png\)"):
        load_hf_images(tmp_path, "train")
    data = load_hf_images(tmp_path, "train", on_error="skip")
    assert len(data) == 5 and len(data.skipped) == 1 and "3.png" in data.skipped[0]
    assert data.labels.tolist() == [0, 1, 0, 0, 1]


def make_folder(root, corrupt=False, odd_size=False):
    for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 255, 0))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), colour).save(root / cls / f"{i}.png")
    Image.new("L", (8, 8), 90).save(root / "dog" / "gray.png")  # grayscale: converted to RGB
    if corrupt:
        (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    if odd_size:
        Image.new("RGB", (9, 8)).save(root / "dog" / "wide.png")


def test_image_folder(tmp_path):
    make_folder(tmp_path)
    data = load_image_folder(tmp_path)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert data.images.shape == (7, 3, 8, 8)
    gray = data.images[-1]  # dog/gray.png sorts last
    assert torch.all(gray == 90)


def test_image_folder_errors(tmp_path):
    make_folder(tmp_path, corrupt=True)
    with pytest.raises(ValueError, match="broken.jpg"):
        load_image_folder(tmp_path)
    data = load_image_folder(tmp_path, on_error="skip")
    assert len(data) == 7 and data.skipped[0].endswith("broken.jpg")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nope")


def test_image_sizes_must_agree_or_be_resized(tmp_path):
    make_folder(tmp_path, odd_size=True)
    with pytest.raises(ValueError, match="wide.png is 8x9"):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=16).images.shape == (8, 3, 16, 16)


def test_unlabelled_folder_and_wrong_mode(tmp_path):
    for i in range(2):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    data = load_image_folder(tmp_path)
    assert data.labels is None
    with pytest.raises(ValueError, match="kNN needs class labels"):
        data.require_labels("kNN")
    Image.new("I;16", (4, 4)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="deep.png has mode 'I;16'"):
        load_image_folder(tmp_path)


def write_cifar_pickles(root, per_batch=4):
    """The python-pickle layout torchvision's CIFAR10 reads (cifar-10-batches-py/)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, per_batch).tolist()
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return data, labels  # the test batch


def test_cifar_pickles(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar(tmp_path)
    test_data, test_labels = write_cifar_pickles(tmp_path)
    train = load_cifar(tmp_path, split="train")
    test = load_cifar(tmp_path, split="test")
    assert train.images.shape == (20, 3, 32, 32) and test.labels.tolist() == test_labels
    # CIFAR rows are channel-major 3x32x32
    assert torch.equal(test.images[1], torch.from_numpy(test_data[1].reshape(3, 32, 32)))
    assert train.classes == [f"c{i}" for i in range(10)]


def test_image_data_validation():
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="3 channels"):
        ImageData(torch.zeros(2, 4, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="labels of shape"):
        ImageData(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.arange(3))


def test_datasets_imagefolder_and_loaded_dataset(tmp_path):
    import datasets

    make_folder(tmp_path / "train")
    data = load_hf_images(tmp_path)  # datasets' imagefolder builder: class folders → ClassLabel
    assert data.classes == ["cat", "dog"] and sorted(data.labels.tolist()) == [0] * 3 + [1] * 4
    ds = datasets.Dataset.from_dict(
        {"picture": [{"bytes": png_bytes((1, 2, 3)), "path": None}] * 2, "y": [4, 5]},
        features=datasets.Features({"picture": datasets.Image(), "y": datasets.Value("int64")}),
    )
    loaded = load_hf_images(ds, label_column="y")
    assert loaded.labels.tolist() == [4, 5] and loaded.images[0, :, 0, 0].tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="no label column 'z'"):
        load_hf_images(ds, label_column="z")
