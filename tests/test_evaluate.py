"""Metrics and significance tests on hand-checkable cases."""

import numpy as np
import pytest
import torch
from scipy.stats import binom, chi2
from statsmodels.stats.contingency_tables import mcnemar

from core.engine.evaluate import (
    accuracy,
    confusion_matrix,
    evaluate,
    expected_calibration_error,
    macro_f1,
    mcnemar_test,
    mean_std,
    paired_bootstrap,
)

GOLD = [0, 0, 0, 1, 1, 2]
PRED = [0, 0, 1, 1, 2, 2]


def test_confusion_accuracy_f1_by_hand() -> None:
    assert confusion_matrix(PRED, GOLD, 3) == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]  # rows gold, columns predicted
    assert accuracy(PRED, GOLD) == pytest.approx(4 / 6)
    # per class F1 = 2tp / (2tp + fp + fn): class 0: 4/5, class 1: 2/4, class 2: 2/3
    assert macro_f1(PRED, GOLD, 3) == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)


def test_macro_f1_counts_never_predicted_and_absent_classes_as_zero() -> None:
    assert macro_f1([0, 0], [0, 0], 2) == pytest.approx(0.5)  # class 1 absent from both: F1 0
    assert macro_f1([0, 0, 0], [0, 1, 1], 2) == pytest.approx((2 / 4 + 0) / 2)


def test_evaluate_takes_argmax_of_tensor_scores() -> None:
    scores = torch.tensor([[-0.1, -2.0], [-3.0, -0.5], [-0.2, -0.3], [-1.0, -0.1]], requires_grad=True)
    result = evaluate(scores, [0, 1, 1, 1], 2)
    assert result.predictions == [0, 1, 0, 1]
    assert result.accuracy == pytest.approx(0.75) and result.n == 4
    assert result.confusion == [[1, 0], [1, 2]]
    assert result.macro_f1 == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert result.to_dict()["confusion"] == [[1, 0], [1, 2]]
    assert evaluate(scores.detach().numpy(), [0, 1, 1, 1], 2) == result


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"shape \[n, 3\]"):
        evaluate(np.zeros((4, 2)), [0, 1, 0, 1], 3)
    with pytest.raises(ValueError, match="NaN for 1 of 2"):
        evaluate(np.array([[0.0, np.nan], [1.0, 0.0]]), [0, 1], 2)
    with pytest.raises(ValueError, match="3 predictions but 2"):
        accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        confusion_matrix([0, 2], [0, 1], 2)
    with pytest.raises(ValueError, match="no examples"):
        accuracy([], [])


def test_expected_calibration_error_by_hand() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    gold = [0, 1, 1, 1]  # correct: yes, no, yes, yes
    # 10 bins: each example alone in its bin -> mean |correct - confidence|
    assert expected_calibration_error(probs, gold) == pytest.approx((0.1 + 0.8 + 0.3 + 0.4) / 4)
    # 1 bin: |accuracy 0.75 - mean confidence 0.75|
    assert expected_calibration_error(probs, gold, n_bins=1) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="probabilities"):
        expected_calibration_error(np.log(probs), gold)


def pairs_with(both: int, a_only: int, b_only: int, neither: int) -> tuple[list[int], list[int], list[int]]:
    """Binary predictions realising the given McNemar table (gold is all 1)."""
    a = [1] * both + [1] * a_only + [0] * b_only + [0] * neither
    b = [1] * both + [0] * a_only + [1] * b_only + [0] * neither
    return a, b, [1] * len(a)


@pytest.mark.parametrize(
    ("table", "expected_p"),
    [
        ((10, 1, 6, 3), 2 * binom.cdf(1, 7, 0.5)),  # exact: 7 discordant pairs, p = 16/128
        ((50, 30, 10, 10), chi2.sf((abs(30 - 10) - 1) ** 2 / 40, 1)),  # chi-square with continuity correction
    ],
)
def test_mcnemar_matches_statsmodels_and_hand(table: tuple[int, int, int, int], expected_p: float) -> None:
    both, a_only, b_only, neither = table
    result = mcnemar_test(*pairs_with(*table))
    exact = a_only + b_only < 25
    reference = mcnemar([[both, a_only], [b_only, neither]], exact=exact, correction=True)
    assert result["p_value"] == pytest.approx(reference.pvalue) == pytest.approx(expected_p)
    assert result["statistic"] == pytest.approx(reference.statistic)
    assert (result["a_only"], result["b_only"], result["exact"]) == (a_only, b_only, exact)


def test_mcnemar_identical_predictions_is_not_significant() -> None:
    result = mcnemar_test(PRED, PRED, GOLD)
    assert result["p_value"] == pytest.approx(1.0)
    assert result["a_only"] == result["b_only"] == 0


def test_paired_bootstrap_ci_contains_true_diff_and_is_reproducible() -> None:
    rng = np.random.default_rng(42)
    n = 1000
    gold = rng.integers(0, 2, n)
    right_a = rng.random(n) < 0.80
    right_b = rng.random(n) < 0.70  # population difference 0.10
    pred_a, pred_b = np.where(right_a, gold, 1 - gold), np.where(right_b, gold, 1 - gold)

    result = paired_bootstrap(pred_a, pred_b, gold, seed=3)
    assert result["diff"] == pytest.approx(right_a.mean() - right_b.mean())
    assert result["ci_low"] < result["diff"] < result["ci_high"]
    assert result["ci_low"] < 0.10 < result["ci_high"]
    assert result["p_value"] < 0.01
    assert paired_bootstrap(pred_a, pred_b, gold, seed=3) == result
    assert paired_bootstrap(pred_a, pred_b, gold, seed=4) != result


def test_paired_bootstrap_identical_predictions() -> None:
    result = paired_bootstrap(PRED, PRED, GOLD)
    assert result == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "p_value": 1.0}


def test_mean_std() -> None:
    assert mean_std([0.7, 0.8, 0.9]) == pytest.approx((0.8, 0.1))  # sample std, ddof=1
    assert mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_std([])
