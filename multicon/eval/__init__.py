"""Evaluation: kNN, linear probe, retrieval R@K, zero-shot, word analogy and similarity."""
