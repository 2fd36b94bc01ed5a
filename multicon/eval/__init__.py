"""Evaluation of learned representations."""

from multicon.eval.features import KNNMonitor, extract_features
from multicon.eval.knn import knn_accuracy, knn_predict
from multicon.eval.linear_probe import linear_probe

__all__ = ["KNNMonitor", "extract_features", "knn_accuracy", "knn_predict", "linear_probe"]
