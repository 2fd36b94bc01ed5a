"""Loaders for real datasets (local files first, the Hub when online)."""

from multicon.data.digits import ImageSplit, load_digits
from multicon.data.images import (
    ImageData,
    decode_image,
    load_cifar,
    load_hf_images,
    load_image_folder,
    load_images,
)

__all__ = [
    "ImageData",
    "ImageSplit",
    "decode_image",
    "load_cifar",
    "load_digits",
    "load_hf_images",
    "load_image_folder",
    "load_images",
]
