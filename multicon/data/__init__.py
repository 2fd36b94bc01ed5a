"""Loaders for real datasets (local files first, the Hub when online)."""

from multicon.data.images import (
    ImageData,
    decode_image,
    load_cifar,
    load_hf_images,
    load_image_folder,
)

__all__ = ["ImageData", "decode_image", "load_cifar", "load_hf_images", "load_image_folder"]
