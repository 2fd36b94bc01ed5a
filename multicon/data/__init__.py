"""Loaders for real datasets (local files first, the Hub when online)."""
