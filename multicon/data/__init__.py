"""Loaders for real datasets (local files first, the Hub when online)."""

from multicon.data.captions import (
    CaptionCorpus,
    CaptionDataset,
    CaptionFolder,
    load_caption_dataset,
)
from multicon.data.digits import ImageSplit, load_digits

__all__ = [
    "CaptionCorpus",
    "CaptionDataset",
    "CaptionFolder",
    "ImageSplit",
    "load_caption_dataset",
    "load_digits",
]
