"""Loaders for real datasets (local files first, the Hub when online) and text corpora."""

from multicon.data.caption_files import CaptionTable, CaptionTextFolder
from multicon.data.caption_sources import caption_pairs, open_captions
from multicon.data.caption_stream import CaptionShardStream, StreamedCaptionPairs
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
from multicon.data.shards import CaptionShards, write_shards

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
    "CaptionShardStream",
    "CaptionShards",
    "CaptionTable",
    "CaptionTextFolder",
    "StreamedCaptionPairs",
    "caption_pairs",
    "open_captions",
    "write_shards",
]
