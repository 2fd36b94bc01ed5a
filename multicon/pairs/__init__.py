"""Pair sources: what counts as "the same"."""

from multicon.pairs.base import (
    BatchPairGenerator,
    MapPairGenerator,
    Pair,
    PairBatch,
    PairGenerator,
)

__all__ = ["BatchPairGenerator", "MapPairGenerator", "Pair", "PairBatch", "PairGenerator"]
