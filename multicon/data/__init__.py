"""Loaders for real datasets (local files first, the Hub when online) and text corpora."""

from multicon.data.captions import (
    CaptionCorpus,
    CaptionDataset,
    CaptionFolder,
    load_caption_dataset,
)
from multicon.data.corpus import EncodedCorpus, TextCorpus, encode_corpus
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
    "EncodedCorpus",
    "ImageData",
    "ImageSplit",
    "TextCorpus",
    "decode_image",
    "encode_corpus",
    "load_cifar",
    "load_digits",
    "load_hf_images",
    "load_image_folder",
    "load_images",
    "CaptionCorpus",
    "CaptionDataset",
    "CaptionFolder",
    "load_caption_dataset",
]
