"""Pair sources: what counts as "the same"."""

from multicon.pairs.base import (
    BatchPairGenerator,
    MapPairGenerator,
    Pair,
    PairBatch,
    PairGenerator,
)
from multicon.pairs.captions import CaptionPairs

__all__ = [
    "BatchPairGenerator",
    "CaptionPairs",
    "MapPairGenerator",
    "Pair",
    "PairBatch",
    "PairGenerator",
]
