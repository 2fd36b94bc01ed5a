"""Evaluation of learned representations."""

from multicon.eval.features import KNNMonitor, extract_features
from multicon.eval.knn import knn_accuracy, knn_predict
from multicon.eval.linear_probe import linear_probe
from multicon.eval.retrieval import embed_corpus, evaluate_retrieval, retrieval_recall
from multicon.eval.words import (
    AnalogyResult,
    SimilarityResult,
    evaluate_analogies,
    evaluate_similarity,
    most_similar,
)
from multicon.eval.zero_shot import (
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_predict,
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
    "embed_corpus",
    "evaluate_retrieval",
    "retrieval_recall",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_predict",
]
