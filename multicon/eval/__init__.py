"""Evaluation of learned representations."""

from multicon.eval.knn import knn_accuracy, knn_predict
from multicon.eval.words import (
    AnalogyResult,
    SimilarityResult,
    evaluate_analogies,
    evaluate_similarity,
    most_similar,
)

__all__ = [
    "AnalogyResult",
    "SimilarityResult",
    "evaluate_analogies",
    "evaluate_similarity",
    "knn_accuracy",
    "knn_predict",
    "most_similar",
]
