"""The TopKEvaluator's logic on inputs small enough to check by hand: which users count, the
popularity baseline, the buckets, calling `recommend` in batches, the rules, the report_gen."""

import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation import report_gen, results, topk
from models import contract, ranking_metrics
from models.ranking_metrics import PAD
from pipeline import configs, run_summary

# Train: user 1 rated movies 10 and 20, user 2 movie 10, user 3 movie 30 (no eval ratings).
# Eval: user 1 rated 30 and 40, user 2 movie 20, user 9 movie 10 (no train ratings: cold start).
TRAIN = topk.Ratings(np.array([1, 1, 2, 3]), np.array([10, 20, 10, 30]))
EVAL = topk.Ratings(np.array([1, 1, 2, 9]), np.array([30, 40, 20, 10]))
# Buckets "0", "1", "2+": user 2 has one train rating, user 1 two.
BOOTSTRAP = dict(bootstrap_samples=1000, confidence=0.95, bootstrap_seed=0)
SETTINGS = topk.TopKSettings(topk_k=2, min_ndcg_over_popularity=0.0,
                             max_ndcg_regression_vs_blessed=0.01, user_activity_edges=(1, 2),
                             **BOOTSTRAP)
NDCG_HIT_AT_1_OF_2 = 1 / (1 + 1 / math.log2(3))  # one hit at rank 1, two relevant movies


def test_users_with_train_and_eval_ratings_count_and_cold_start_users_are_counted_apart():
    users = topk.eval_users(TRAIN, EVAL)
    assert users.user_ids.tolist() == [1, 2]
    assert users.seen.sets() == [{10, 20}, {10}]
    assert users.relevant == [{30, 40}, {20}]
    assert users.train_counts.tolist() == [2, 1]
    assert users.cold_start_users == 1
    assert users.buckets(SETTINGS.user_activity_edges).tolist() == ["2+", "1"]
    assert users.buckets((1, 20, 101)).tolist() == ["1-19", "1-19"]


def test_rows_hold_each_users_distinct_movies_in_order_whatever_the_ratings_order():
    ratings = topk.Ratings(np.array([5, 2, 5, 2, 5, 7]), np.array([30, 40, 10, 40, 30, 1]))
    rows = topk.by_user(ratings, np.array([2, 3, 5]))
    assert [rows[u].tolist() for u in range(len(rows))] == [[40], [], [10, 30]]
    assert rows.lengths().tolist() == [1, 0, 2]
    assert rows.sets() == [{40}, set(), {10, 30}]


def test_popularity_ranks_by_train_ratings_with_ties_by_id():
    # 10: 2 ratings; 20, 30: one each.
    assert topk.popularity_order(TRAIN.movie_ids).tolist() == [10, 20, 30]
    assert topk.popularity_order(np.array([7, 5, 5, 9, 7, 3])).tolist() == [5, 7, 3, 9]


def test_popularity_lists_leave_out_the_users_train_movies_and_pad():
    order = np.array([10, 20, 30])
    lists = topk.popularity_lists(order, [np.array([10, 20]), np.array([10]), np.array([], int)],
                                  k=2)
    assert lists.tolist() == [[30, PAD], [20, 30], [10, 20]]


class _FixedRecommender(tf.Module):
    """A `recommend` signature that returns fixed lists: K = max(k), at most the lists' width.
    Counts its calls, to see the batches."""

    def __init__(self, lists: dict[int, list[int]]):
        super().__init__()
        users = sorted(lists)
        self.index = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(users, tf.int64), tf.range(len(users), dtype=tf.int64)), -1)
        self.lists = tf.constant([lists[u] for u in users], tf.int64)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name=contract.USER_ID),
                                  tf.TensorSpec([None], tf.int32, name=contract.K)])
    def recommend(self, user_id, k):
        width = tf.minimum(tf.reduce_max(k), tf.shape(self.lists)[1])
        return {contract.MOVIE_IDS: tf.gather(self.lists, self.index.lookup(user_id))[:, :width]}


def save_recommender(path, lists) -> str:
    module = _FixedRecommender(lists)
    tf.saved_model.save(module, str(path), signatures={contract.RECOMMEND: module.recommend})
    return str(path)


@pytest.fixture(scope="module")
def candidate_dir(tmp_path_factory):
    # User 1: both relevant movies; user 2: no hit.
    return save_recommender(tmp_path_factory.mktemp("candidate"), {1: [40, 30], 2: [30, 40]})


def test_recommend_is_called_in_batches_and_short_lists_are_padded(tmp_path):
    model_dir = save_recommender(tmp_path, {u: [u * 10, u * 10 + 1] for u in range(1, 6)})
    lists = topk.recommend_lists(model_dir, np.array([5, 1, 3, 2, 4]), k=3, batch_size=2)
    assert lists.tolist() == [[50, 51, PAD], [10, 11, PAD], [30, 31, PAD], [20, 21, PAD],
                              [40, 41, PAD]]
    assert topk.recommend_lists(model_dir, np.array([2]), k=1).tolist() == [[20]]


def test_metrics_per_model_and_bucket_by_hand(candidate_dir):
    result = topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir}, SETTINGS)
    assert result.models == [results.CANDIDATE, results.POPULARITY]
    assert result.catalogue_size == 4  # 10, 20, 30, 40
    assert result.cold_start_users == 1
    assert result.counts == {topk.OVERALL: {"users": 2, "relevant": 3},
                             "1": {"users": 1, "relevant": 1}, "2+": {"users": 1, "relevant": 2}}
    cand = result.metrics[results.CANDIDATE]
    # User 1 (bucket 2+) gets [40, 30]: both hits. User 2 (bucket 1) gets [30, 40]: none.
    assert cand["2+"] == pytest.approx(
        {"precision": 1.0, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "coverage": 0.5})
    assert cand["1"] == pytest.approx(
        {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0, "coverage": 0.5})
    assert cand[topk.OVERALL] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "ndcg": 0.5, "map": 0.5, "coverage": 0.5})
    # Popularity [10, 20, 30]: user 1 gets [30, PAD] (one hit of two), user 2 [20, 30] (a hit
    # at rank 1, the only relevant movie).
    pop = result.metrics[results.POPULARITY]
    assert pop["2+"] == pytest.approx({"precision": 0.5, "recall": 0.5, "ndcg": NDCG_HIT_AT_1_OF_2,
                                       "map": 0.5, "coverage": 0.25})
    assert pop["1"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "ndcg": 1.0, "map": 1.0, "coverage": 0.5})
    assert pop[topk.OVERALL]["ndcg"] == pytest.approx((NDCG_HIT_AT_1_OF_2 + 1) / 2)
    assert pop[topk.OVERALL]["coverage"] == 0.5  # 20, 30
    # The candidate ranks worse than popularity on average, but two users are no evidence: the
    # per-user changes are +0.387 (user 1) and -1 (user 2), so resamples of two users give
    # means of -1, -0.307 or +0.387, and the interval reaches above 0: not refused.
    interval = result.intervals[results.POPULARITY]
    assert interval.change == pytest.approx(0.5 - (NDCG_HIT_AT_1_OF_2 + 1) / 2)
    assert interval.lower == pytest.approx(-1.0)
    assert interval.upper == pytest.approx(1.0 - NDCG_HIT_AT_1_OF_2)
    assert result.blessed and result.failures == []


def test_the_blessed_model_is_scored_and_its_rule_checked(candidate_dir):
    settings = dataclasses.replace(SETTINGS, min_ndcg_over_popularity=0.0)
    result = topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir,
                                         results.LATEST_BLESSED: candidate_dir}, settings)
    assert result.models == [results.CANDIDATE, results.POPULARITY, results.LATEST_BLESSED]
    assert result.metrics[results.LATEST_BLESSED] == result.metrics[results.CANDIDATE]
    # The same lists: every resample's change is 0.
    blessed = result.intervals[results.LATEST_BLESSED]
    assert (blessed.change, blessed.lower, blessed.upper) == (0.0, 0.0, 0.0)
    assert result.failures == []


def test_no_user_in_both_splits_is_an_error_that_says_so(candidate_dir):
    with pytest.raises(ValueError, match="no user has ratings in both"):
        topk.evaluate(TRAIN, topk.Ratings(np.array([9]), np.array([10])),
                      {results.CANDIDATE: candidate_dir}, SETTINGS)


RULES = topk.TopKSettings(topk_k=10, min_ndcg_over_popularity=0.02,
                          max_ndcg_regression_vs_blessed=0.005, user_activity_edges=(1,),
                          **BOOTSTRAP)
# 40 users' NDCG@10 under a baseline; a candidate that changes each by the same amount has that
# change as every resample's, so its interval is that one value.
BASE = np.random.default_rng(0).uniform(0.0, 0.5, 40)


@pytest.mark.parametrize("change, failed", [
    (0.02, []), (0.0201, []), (0.0199, ["min_ndcg_over_popularity"]),
    (-0.1, ["min_ndcg_over_popularity"]), (math.nan, ["min_ndcg_over_popularity"])])
def test_ndcg_must_not_be_confidently_below_popularity_plus_the_margin(change, failed):
    _, failures = topk.check_rules({results.CANDIDATE: BASE + change, results.POPULARITY: BASE},
                                   RULES)
    assert [f.rule.setting for f in failures] == failed


@pytest.mark.parametrize("change, failed", [(0.0, False), (-0.004, False), (-0.0051, True)])
def test_ndcg_may_drop_below_the_blessed_models_by_the_tolerance(change, failed):
    _, failures = topk.check_rules({results.CANDIDATE: BASE + change,
                                    results.POPULARITY: BASE - 0.5,
                                    results.LATEST_BLESSED: BASE}, RULES)
    assert [f.rule.setting for f in failures] == (["max_ndcg_regression_vs_blessed"]
                                                  if failed else [])


def test_a_noisy_change_is_refused_only_when_its_whole_interval_is_below_the_bound():
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.1, len(BASE))
    noise -= noise.mean()  # a mean change of exactly 0, per-user changes of +-0.1
    intervals, failures = topk.check_rules(
        {results.CANDIDATE: BASE + noise - 0.01, results.POPULARITY: BASE - 0.5,
         results.LATEST_BLESSED: BASE}, RULES)
    blessed = intervals[results.LATEST_BLESSED]
    # -0.01 on average, below the tolerance's -0.005, but inside the noise: not refused.
    assert blessed.change == pytest.approx(-0.01)
    assert blessed.lower < -0.03 and blessed.upper > 0.01
    assert failures == []
    # The same noise 0.1 lower: the whole interval is below -0.005.
    _, failures = topk.check_rules(
        {results.CANDIDATE: BASE + noise - 0.1, results.POPULARITY: BASE - 0.5,
         results.LATEST_BLESSED: BASE}, RULES)
    assert [f.rule.setting for f in failures] == ["max_ndcg_regression_vs_blessed"]


def test_a_failure_names_the_rule_its_setting_the_interval_and_the_direction():
    _, (failure,) = topk.check_rules({results.CANDIDATE: BASE - 0.15, results.POPULARITY: BASE},
                                     RULES)
    assert failure.excess == pytest.approx(0.17)
    mean = BASE.mean()
    assert failure.message() == (
        "overall top-k NDCG not confidently below the popularity baseline's plus a margin "
        f"(EvalSettings.min_ndcg_over_popularity) failed on overall: NDCG@10 {mean - 0.15:.4f} "
        f"vs popularity baseline {mean:.4f}, change -0.1500 (95% interval -0.1500 to -0.1500), "
        "allowed >= +0.0200: the whole interval is below it, by 0.1700")


def test_the_evaluation_survives_its_json(candidate_dir, tmp_path):
    result = topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir}, SETTINGS,
                           uri=str(tmp_path))
    (tmp_path / topk.METRICS_FILE).write_text(result.to_json())
    assert topk.TopKEvaluation.load(str(tmp_path)) == result
    # Indented, for whoever opens the artifact's file.
    assert result.to_json().startswith('{\n  "k": 2,\n  "catalogue_size": ')
    assert result.value(results.CANDIDATE, topk.OVERALL, results.NDCG) == 0.5
    for model, bucket, metric in [(results.LATEST_BLESSED, topk.OVERALL, results.NDCG),
                                  (results.CANDIDATE, "7+", results.NDCG),
                                  (results.CANDIDATE, topk.OVERALL, "auc")]:
        assert math.isnan(result.value(model, bucket, metric))


def test_settings_come_from_eval_settings_and_metric_names_from_ranking_metrics():
    settings = topk.TopKSettings.from_json(topk.settings_json(configs.EVAL))
    assert settings.topk_k == configs.EVAL.topk_k == 10
    assert settings.user_activity_edges == configs.EVAL.user_activity_edges
    assert list(topk.METRIC_TITLES) == [results.NDCG, "precision", "recall", "map",
                                        topk.COVERAGE]
    assert set(topk.METRIC_TITLES) == {*ranking_metrics.METRICS, topk.COVERAGE}
    # The component's parameter: the TopKSettings fields only, keys sorted, so that the text
    # (part of TFX's cache key) changes only when a top-k setting does.
    assert topk.settings_json(SETTINGS) == (
        '{"bootstrap_samples": 1000, "bootstrap_seed": 0, "confidence": 0.95, '
        '"max_ndcg_regression_vs_blessed": 0.01, "min_ndcg_over_popularity": 0.0, '
        '"topk_k": 2, "user_activity_edges": [1, 2]}')


def test_read_ratings_reads_every_gzipped_file_of_the_split_in_order(tmp_path):
    from tfx.types import standard_artifacts

    def example(user, movie):
        return contract.tf_example({"user_id": user, "movie_id": movie, "rating": 4.0,
                                    "title": "x"}).SerializeToString()

    split = tmp_path / "Split-train"
    split.mkdir()
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for name, pairs in (("data_tfrecord-00001-of-00002.gz", [(3, 30)]),
                        ("data_tfrecord-00000-of-00002.gz", [(1, 10), (2, 20), (1, 40)])):
        with tf.io.TFRecordWriter(str(split / name), options) as writer:
            for user, movie in pairs:
                writer.write(example(user, movie))
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path)
    examples.split_names = '["train", "eval"]'
    # Batches of 2 over both files, in file name order.
    ratings = topk.read_ratings(examples, "train", batch_size=2)
    assert ratings.user_ids.tolist() == [1, 2, 1, 3]
    assert ratings.movie_ids.tolist() == [10, 20, 40, 30]
    assert ratings.user_ids.dtype == np.int64
    with pytest.raises(FileNotFoundError, match=f"no examples match {tmp_path}/Split-eval/\\*"):
        topk.read_ratings(examples, "eval")


def _rmse_evaluation(uri, baseline):
    """A TFMA evaluation as results.load_evaluation returns it: overall and one bucket."""
    metrics = {key: {model: {results.RMSE: 1.0, results.MAE: 0.8, results.EXAMPLE_COUNT: 10}
                     for model in (results.CANDIDATE, baseline) if model}
               for key in (results.OVERALL, ("user_activity", "1-19"))}
    return results.Evaluation(uri=uri, models=[results.CANDIDATE] + ([baseline] * bool(baseline)),
                              metrics=metrics, validation_ok=None, failures=[])


def test_the_report_and_the_run_summary_show_the_top_k_table_and_rules(candidate_dir,
                                                                        tmp_path):
    top_k = topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir}, SETTINGS,
                          uri="topk-uri")
    settings = {**dataclasses.asdict(configs.EVAL), **dataclasses.asdict(SETTINGS)}
    path = report_gen.write_report(
        str(tmp_path), _rmse_evaluation("a", results.BIAS_BASELINE), _rmse_evaluation("b", None),
        top_k, blessed=False, failures=[f.message() for f in top_k.failures], pushed_to=None,
        settings=settings)
    text = open(path).read()
    assert "## Top-2 recommendations" in text
    assert ("| **overall** | 2 | 3 | candidate | 0.5000 | 0.5000 | 0.5000 | 0.5000 | 0.5000 |"
            in text)
    assert f"|  |  |  | popularity baseline | {(NDCG_HIT_AT_1_OF_2 + 1) / 2:.4f} |" in text
    assert "| 2+ | 1 | 2 | candidate | 1.0000 |" in text
    assert ("| overall top-k NDCG not confidently below the popularity baseline's plus a margin "
            "| min_ndcg_over_popularity = 0.0 | pass | candidate NDCG@2 0.5000, popularity "
            "baseline 0.8066, change -0.3066 (95% interval -1.0000 to +0.3869) (allowed >= "
            "+0.0000) |") in text
    assert ("| overall top-k NDCG not confidently below the latest blessed model's minus a "
            "tolerance | max_ndcg_regression_vs_blessed = 0.01 | skipped |") in text
    assert "95% interval: a paired bootstrap over users, 1,000 resamples, seed 0" in text
    assert "1 eval users without train ratings (cold start)" in text
    # Every blessing rule has its row, under results.RULES' own text.
    for rule in results.RULES.values():
        assert f"| {rule.title} | {rule.setting} = " in text, rule
    png = (tmp_path / report_gen.TOPK_PLOT_FILE).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000

    lines = run_summary.format_top_k(top_k)
    assert lines[0].startswith("Top-2 recommendations for the 2 users")
    assert "1: 1, 2+: 1 users" in lines[0]
    assert lines[1].split() == ["model", "NDCG@2", "precision@2", "recall@2", "MAP@2",
                                "coverage", "1", "2+"]
    assert lines[2].split() == ["candidate", *["0.5000"] * 5, "0.0000", "1.0000"]
    assert lines[3].split()[:3] == ["popularity", "baseline", f"{(NDCG_HIT_AT_1_OF_2 + 1) / 2:.4f}"]


def test_ratings_whose_user_and_movie_columns_differ_in_length_are_refused():
    for broken in ({"train": topk.Ratings(np.array([1, 2]), np.array([10])), "eval_": EVAL},
                   {"train": TRAIN, "eval_": topk.Ratings(np.array([1]), np.array([10, 20]))}):
        with pytest.raises(ValueError):
            topk.eval_users(**broken)


def test_recommend_gets_each_batch_once_as_int64_ids_with_k_per_user(monkeypatch):
    calls = []

    def recommend(user_id, k):
        calls.append((user_id.dtype, user_id.numpy().tolist(), k.dtype, k.numpy().tolist()))
        return {contract.MOVIE_IDS: tf.reshape(user_id * 10, [-1, 1])}

    class Loaded:
        signatures = {contract.RECOMMEND: recommend}

    monkeypatch.setattr(topk.tf.saved_model, "load", lambda path: Loaded())
    lists = topk.recommend_lists("model", np.array([5, 1, 3, 2, 4]), k=2, batch_size=2)
    assert lists.tolist() == [[50, PAD], [10, PAD], [30, PAD], [20, PAD], [40, PAD]]
    assert calls == [(tf.int64, [5, 1], tf.int32, [2, 2]), (tf.int64, [3, 2], tf.int32, [2, 2]),
                     (tf.int64, [4], tf.int32, [2])]


def test_user_ids_of_any_integer_dtype_reach_the_signature(tmp_path):
    model_dir = save_recommender(tmp_path, {1: [10, 11], 2: [20, 21]})
    assert topk.recommend_lists(model_dir, np.array([2, 1], np.int32), k=1).tolist() == [
        [20], [10]]


def test_evaluate_asks_each_model_for_k_movies_in_batches_and_logs_its_time(
        candidate_dir, monkeypatch, caplog):
    calls = []
    real = topk.recommend_lists

    def recording(model_dir, user_ids, k, batch_size=256):
        calls.append((model_dir, user_ids.tolist(), k, batch_size))
        return real(model_dir, user_ids, k, batch_size)

    monkeypatch.setattr(topk, "recommend_lists", recording)
    caplog.set_level("INFO", logger=topk.__name__)
    result = topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir}, SETTINGS,
                           batch_size=1)
    assert calls == [(candidate_dir, [1, 2], 2, 1)]
    assert result.uri == ""  # no artifact unless one is given
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recommend")]
    words = line.split()
    assert words[:-2] == ["recommend", "of", results.CANDIDATE, "for", "2", "users", "in"]
    assert words[-1] == "s" and 0 <= float(words[-2]) < 60


def test_no_user_in_both_splits_says_why_in_full(candidate_dir):
    with pytest.raises(ValueError) as e:
        topk.evaluate(TRAIN, topk.Ratings(np.array([9]), np.array([10])),
                      {results.CANDIDATE: candidate_dir}, SETTINGS)
    assert str(e.value) == ("no user has ratings in both the train and the eval split: top-k "
                            "recommendations cannot be evaluated")


def test_the_bootstrap_intervals_are_reproducible_from_the_seed():
    rng = np.random.default_rng(1)
    ndcg = {results.CANDIDATE: rng.uniform(0, 1, 40), results.POPULARITY: rng.uniform(0, 1, 40)}
    first, _ = topk.check_rules(ndcg, RULES)
    again, _ = topk.check_rules(ndcg, RULES)
    assert first == again


def test_an_evaluation_with_failures_survives_its_json(candidate_dir, tmp_path):
    _, failures = topk.check_rules({results.CANDIDATE: BASE - 0.15, results.POPULARITY: BASE},
                                   RULES)
    result = dataclasses.replace(
        topk.evaluate(TRAIN, EVAL, {results.CANDIDATE: candidate_dir}, SETTINGS,
                      uri=str(tmp_path)), failures=failures, blessed=False)
    (tmp_path / topk.METRICS_FILE).write_text(result.to_json())
    loaded = topk.TopKEvaluation.load(str(tmp_path))
    assert loaded == result and loaded.failures[0].slice == results.OVERALL
    assert loaded.failures[0].message() == failures[0].message()


def test_an_interval_ending_exactly_at_the_rounded_bound_passes():
    # Equal lists: every resample's change is exactly 0.0, and so is the bound minus rounding.
    settings = dataclasses.replace(RULES, min_ndcg_over_popularity=topk._ROUNDING)
    same = np.full(40, 0.25)
    changes, failures = topk.check_rules({results.CANDIDATE: same, results.POPULARITY: same},
                                         settings)
    assert changes[results.POPULARITY].upper == 0.0 and failures == []
