"""Loaders for real datasets and corpora."""
