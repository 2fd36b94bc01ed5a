"""Evaluation of learned representations."""

from multicon.eval.knn import knn_accuracy, knn_predict
from multicon.eval.retrieval import embed_corpus, evaluate_retrieval, retrieval_recall
from multicon.eval.zero_shot import (
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_predict,
)

__all__ = [
    "embed_corpus",
    "evaluate_retrieval",
    "knn_accuracy",
    "knn_predict",
    "retrieval_recall",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_predict",
]
