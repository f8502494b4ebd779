"""Test-set scores on small cases worked out by hand."""

import math

import numpy as np
import pytest

from common import metrics

# Five images, three classes; logits = log(probabilities), so softmax gives these rows back.
PROBABILITIES = np.array([
    [0.40, 0.30, 0.30],  # label 0: right, confidence 0.40
    [0.45, 0.35, 0.20],  # label 1: wrong, confidence 0.45
    [0.90, 0.05, 0.05],  # label 0: right, confidence 0.90
    [0.10, 0.80, 0.10],  # label 2: wrong, confidence 0.80
    [0.20, 0.10, 0.70],  # label 2: right, confidence 0.70
])
LOGITS = np.log(PROBABILITIES)
LABELS = np.array([0, 1, 0, 2, 2])


def test_accuracy_and_nll():
    assert metrics.accuracy(LOGITS, LABELS) == pytest.approx(3 / 5)
    expected_nll = -(math.log(0.40) + math.log(0.35) + math.log(0.90) + math.log(0.10) + math.log(0.70)) / 5
    assert metrics.nll(LOGITS, LABELS) == pytest.approx(expected_nll, rel=1e-12)


def test_expected_calibration_error_two_bins():
    # Bin (0, 0.5]: confidences 0.40, 0.45, one right: |0.5 - 0.425| * 2/5 = 0.03.
    # Bin (0.5, 1]: confidences 0.90, 0.80, 0.70, two right: |2/3 - 0.8| * 3/5 = 0.08.
    assert metrics.expected_calibration_error(LOGITS, LABELS, bins=2) == pytest.approx(0.11, abs=1e-12)


def test_expected_calibration_error_fifteen_bins_of_singletons():
    # With 15 bins every image sits alone in its bin: ECE is the mean of |correct - confidence|.
    expected = (0.60 + 0.45 + 0.10 + 0.80 + 0.30) / 5
    assert metrics.expected_calibration_error(LOGITS, LABELS, bins=15) == pytest.approx(expected, abs=1e-12)


def test_agreement_and_kl_to_reference():
    reference = np.log(np.array([[0.6, 0.4, 1e-300], [0.2, 0.3, 0.5]]))
    model = np.log(np.array([[0.9, 0.1, 1e-300], [0.1, 0.8, 0.1]]))
    assert metrics.agreement(model, reference) == pytest.approx(1 / 2)  # top-1: 0 = 0, then 1 != 2
    first = 0.6 * math.log(0.6 / 0.9) + 0.4 * math.log(0.4 / 0.1)
    second = 0.2 * math.log(0.2 / 0.1) + 0.3 * math.log(0.3 / 0.8) + 0.5 * math.log(0.5 / 0.1)
    assert metrics.kl_divergence(reference, model) == pytest.approx((first + second) / 2, rel=1e-9)
    assert metrics.kl_divergence(reference, reference) == pytest.approx(0.0, abs=1e-12)


def test_confusion_matrix_and_per_class_accuracy():
    predicted = LOGITS.argmax(axis=1)  # [0, 0, 0, 1, 2]
    matrix = metrics.confusion_matrix(predicted, LABELS, 3)
    assert matrix.tolist() == [[2, 0, 0], [1, 0, 0], [0, 1, 1]]
    assert metrics.per_class_accuracy(predicted, LABELS, 3).tolist() == [1.0, 0.0, 0.5]
