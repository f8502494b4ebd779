"""Test-set scores computed from logits with NumPy in float64, so they are exact and easy to check by hand."""

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == labels))


def nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (natural log)."""
    return float(-np.mean(log_softmax(logits)[np.arange(len(labels)), labels]))


def expected_calibration_error(logits: np.ndarray, labels: np.ndarray, bins: int) -> float:
    """ECE over `bins` equal-width confidence bins (lo, hi], weighted by each bin's share of samples."""
    probabilities = np.exp(log_softmax(logits))
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bin_index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = bin_index == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def agreement(logits: np.ndarray, reference_logits: np.ndarray) -> float:
    """Share of images where the top-1 class matches the reference model's."""
    return float(np.mean(logits.argmax(axis=1) == reference_logits.argmax(axis=1)))


def kl_divergence(reference_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean KL(reference || model) at temperature 1, in nats."""
    reference_log_p = log_softmax(reference_logits)
    return float(np.mean(np.sum(np.exp(reference_log_p) * (reference_log_p - log_softmax(logits)), axis=1)))


def confusion_matrix(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Counts indexed [true class, predicted class]."""
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(classes, classes)


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    matrix = confusion_matrix(predicted, labels, classes)
    return np.diag(matrix) / matrix.sum(axis=1)
