"""Evaluation of learned representations."""

from multicon.eval.features import KNNMonitor, extract_features
from multicon.eval.knn import knn_accuracy, knn_predict
from multicon.eval.linear_probe import linear_probe
from multicon.eval.words import (
    AnalogyResult,
    SimilarityResult,
    evaluate_analogies,
    evaluate_similarity,
    most_similar,
)

__all__ = [
    "AnalogyResult",
    "KNNMonitor",
    "SimilarityResult",
    "evaluate_analogies",
    "evaluate_similarity",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "most_similar",
]
