"""Loaders for real datasets (local files first, the Hub when online)."""

from multicon.data.digits import ImageSplit, load_digits

__all__ = ["ImageSplit", "load_digits"]
