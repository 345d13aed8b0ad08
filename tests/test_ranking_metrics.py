"""Top-k metrics against values worked out by hand."""

import math
import warnings

import numpy as np
import pytest

from models import ranking_metrics
from models.ranking_metrics import PAD

# User 1: one hit at rank 2 of 3, two relevant movies. User 2: hits at ranks 1 and 3, a padded
# entry between them.
RECOMMENDED = [[10, 20, 30], [5, PAD, 7]]
RELEVANT = [{20, 40}, {5, 7}]
IDEAL_2 = 1 + 1 / math.log2(3)  # DCG of two hits at ranks 1 and 2


def test_per_user_metrics_match_hand_computed_values():
    got = ranking_metrics.per_user(RECOMMENDED, RELEVANT, k=3)
    np.testing.assert_allclose(got["precision"], [1 / 3, 2 / 3])
    np.testing.assert_allclose(got["recall"], [1 / 2, 1.0])
    np.testing.assert_allclose(got["ndcg"], [(1 / math.log2(3)) / IDEAL_2,
                                             (1 + 1 / math.log2(4)) / IDEAL_2])
    np.testing.assert_allclose(got["map"], [(1 / 2) / 2, (1 / 1 + 2 / 3) / 2])


def test_evaluate_means_and_coverage():
    got = ranking_metrics.evaluate(RECOMMENDED, RELEVANT, k=3, catalogue_size=10)
    assert got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.75)
    assert got["coverage"] == pytest.approx(5 / 10)  # 10, 20, 30, 5, 7
    # Only each list's first k count: at k = 2, 10, 20 and 5 (PAD is no movie).
    assert ranking_metrics.evaluate(RECOMMENDED, RELEVANT, k=2,
                                    catalogue_size=10)["coverage"] == pytest.approx(3 / 10)


def test_only_the_first_k_count_and_short_lists_miss():
    # k=1: only the first entry; a list shorter than k counts its missing entries as misses.
    got = ranking_metrics.per_user([[1, 2], [3]], [{2}, {3}], k=2)
    np.testing.assert_allclose(got["precision"], [0.5, 0.5])
    np.testing.assert_allclose(got["ndcg"], [(1 / math.log2(3)) / 1.0, 1.0])
    assert ranking_metrics.per_user([[1, 2]], [{2}], k=1)["recall"][0] == 0.0


def test_a_perfect_list_scores_one():
    got = ranking_metrics.per_user([[4, 3, 2, 1]], [{1, 2, 3, 4, 5}], k=4)
    for metric in ranking_metrics.METRICS:
        expected = 4 / 5 if metric == "recall" else 1.0
        assert got[metric][0] == pytest.approx(expected), metric


def test_mean_over_a_mask_and_bad_arguments():
    got = ranking_metrics.per_user(RECOMMENDED, RELEVANT, k=3)
    assert ranking_metrics.mean(got, np.array([False, True]))["recall"] == 1.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        ranking_metrics.per_user(RECOMMENDED, RELEVANT, k=0)
    with pytest.raises(ValueError, match="2 recommendation lists for 1 users"):
        ranking_metrics.per_user(RECOMMENDED, RELEVANT[:1], k=3)


def test_a_user_without_relevant_movies_scores_zero_and_the_users_after_still_count():
    got = ranking_metrics.per_user([[1], [2], [3]], [set(), {2}, {3}], k=1)
    for metric in ranking_metrics.METRICS:
        np.testing.assert_allclose(got[metric], [0.0, 1.0, 1.0], err_msg=metric)


def test_the_mean_of_no_users_is_nan_without_numpy_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would be one
        got = ranking_metrics.mean({"ndcg": np.zeros(0)})
    assert math.isnan(got["ndcg"])
