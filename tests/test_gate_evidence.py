"""The gate decides on evidence: what it must refuse, it refuses with the rule and the interval in
the message; a retrain it cannot tell from the serving model, it blesses.

Each decision goes through the pipeline's own code: RatingErrors' combiner
(components/evaluation/metrics.py) and TFMA's validator on make_eval_configs' thresholds for the
RMSE rules, topk.evaluate for the top-k rules, with the default EvalSettings. The forced bad
model (`--force-bad-model`) is refused in the whole pipeline, tests/test_pipeline_e2e.py.
"""

import dataclasses

import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types
from test_model import N_MOVIES, N_USERS, SMALL, planted_ratings
from test_retrieval import HPARAMS as TWO_STAGE
from test_retrieval import N_MOVIES as CATALOGUE_MOVIES
from test_retrieval import USER_IDS, catalogue_of, planted_interactions
from test_topk import save_recommender

from components.evaluation import bootstrap, metrics, results, topk
from models import arrays, features, trainer
from models.hparams import HParams
from pipeline import configs
from pipeline.pipeline import make_eval_configs

EVAL = configs.EVAL


def paired_values(users, labels, candidate, baseline, baseline_name) -> dict:
    """RatingErrors' change outputs for the candidate on one slice, as the Evaluator computes
    them; with the EvalSettings' bootstrap."""
    metric = metrics.RatingErrors(
        baseline=baseline_name, samples=EVAL.bootstrap_samples, confidence=EVAL.confidence,
        seed=EVAL.bootstrap_seed, min_examples=EVAL.genre_min_examples)
    (computation,) = metric.computations(model_names=[results.CANDIDATE, baseline_name])
    combiner = computation.combiner
    acc = combiner.create_accumulator()
    for user, label, c, b in zip(users, labels, candidate, baseline, strict=True):
        acc = combiner.add_input(acc, metric_types.StandardMetricInputs(
            labels=np.array([label]), example_weights=np.array([1.0]),
            predictions={results.CANDIDATE: np.array([c]), baseline_name: np.array([b])},
            features={features.USER_ID: np.array([user])}))
    return {key: value for key, value in combiner.extract_output(acc).items()
            if key.model_name == results.CANDIDATE and key.name not in (metrics.RMSE, metrics.MAE)}


def rmse_rule_failures(users, labels, candidate, baseline, baseline_name
                       ) -> list[results.Failure]:
    """The overall RMSE rule against `baseline_name` as the Evaluator decides it: TFMA's
    validator on make_eval_configs' thresholds; the failures as the gate reports them."""
    values = paired_values(users, labels, candidate, baseline, baseline_name)
    tfma_metrics = {}
    for key, value in values.items():
        tfma_metrics[key] = value
        tfma_metrics[key._replace(model_name=baseline_name)] = 0.0  # the baseline's own
        tfma_metrics[key.make_diff_key()] = value
    config = tfma.utils.update_eval_config_with_defaults(make_eval_configs(EVAL)[baseline_name],
                                                         has_baseline=True)
    validation = metrics_validator.validate_metrics(((), tfma_metrics), config)

    def rmse(p):
        return float(np.sqrt(np.mean((np.asarray(labels) - p) ** 2)))

    evaluation = results.Evaluation(
        uri="test", models=[results.CANDIDATE, baseline_name],
        metrics={results.OVERALL: {
            results.CANDIDATE: {results.RMSE: rmse(candidate),
                                **{k.name: v for k, v in values.items()}},
            baseline_name: {results.RMSE: rmse(baseline)}}},
        validation_ok=validation.validation_ok, failures=[], confidence=EVAL.confidence)
    return [results.failure_of(evaluation, results.OVERALL, f)
            for s in validation.metric_validations_per_slice for f in s.failures]


def retrain_predictions(seed: int, n_users=300, ratings=3000):
    """Eval ratings and two retrains' predictions that only noise tells apart: each the truth
    plus an error of the same size, drawn with seeds `seed` and `seed + 1000`; the users' own
    errors (how hard each user is) shared, as between two fits of the same model."""
    rng = np.random.default_rng(12345)
    users = rng.integers(0, n_users, ratings)
    labels = np.clip(rng.normal(3.5, 1.0, ratings), 0.5, 5.0)
    user_error = rng.normal(0.0, 0.5, n_users)[users]
    predictions = [labels + user_error + np.random.default_rng(s).normal(0.0, 0.3, ratings)
                   for s in (seed, seed + 1000)]
    return users, labels, predictions


def test_an_identical_retrain_has_the_interval_zero_and_is_blessed():
    users, labels, (predictions, _) = retrain_predictions(0)
    values = paired_values(users, labels, predictions, predictions, results.LATEST_BLESSED)
    assert set(values.values()) == {0.0}
    assert rmse_rule_failures(users, labels, predictions, predictions,
                              results.LATEST_BLESSED) == []


def test_retrains_that_only_noise_tells_apart_are_blessed_10_of_10():
    for seed in range(10):
        users, labels, (first, second) = retrain_predictions(seed)
        assert rmse_rule_failures(users, labels, second, first, results.LATEST_BLESSED) == [], \
            seed


def test_noise_refuses_an_indistinguishable_retrain_in_at_most_the_intervals_tail():
    """Over 200 pairs of retrains that differ by noise only, the RMSE rule against the blessed
    model (tolerance 0) refuses about (1 - confidence) / 2 of them: 2.5%, not half as two
    point estimates would."""
    refused = 0
    for seed in range(200):
        users, labels, (first, second) = retrain_predictions(seed, n_users=100, ratings=1000)
        ids, per_user = np.unique(users, return_inverse=True)
        interval = bootstrap.error_change(
            np.bincount(per_user), np.bincount(per_user, (labels - second) ** 2),
            np.bincount(per_user, (labels - first) ** 2), True, 500, EVAL.confidence, seed)
        refused += interval.lower > EVAL.max_regression_vs_blessed
    assert refused <= 200 * 0.05


def test_a_model_trained_on_ratings_shuffled_across_users_is_refused_with_the_interval():
    columns, _, _ = planted_ratings()
    train, held_out = arrays.holdout(columns, 0.2, seed=1)
    shuffled = dict(train)
    shuffled[features.USER_IDX] = np.random.default_rng(0).permutation(train[features.USER_IDX])
    hp = HParams(model_type="bias", **SMALL, max_epochs=6, batch_size=512)
    baseline = trainer.train(hp, N_USERS, N_MOVIES, train, verbose=0)
    candidate = trainer.train(hp, N_USERS, N_MOVIES, shuffled, verbose=0)
    labels = features.unscale_rating(held_out[features.LABEL_XF])
    failures = rmse_rule_failures(held_out[features.USER_IDX], labels,
                                  trainer.predict_stars(candidate, held_out),
                                  trainer.predict_stars(baseline, held_out),
                                  results.BIAS_BASELINE)
    (failure,) = failures
    assert failure.rule.setting == "min_improvement_over_baseline"
    assert failure.lower > 0.02  # the users' planted biases, lost
    message = failure.message()
    assert message.startswith(
        "overall RMSE not confidently above the bias baseline's minus a margin "
        "(EvalSettings.min_improvement_over_baseline) failed on overall: "
        "root_mean_squared_error ")
    assert (f"change {failure.change:+.4f} (95% interval {failure.lower:+.4f} to "
            f"{failure.upper:+.4f}), allowed <= +0.0000: the whole interval is above it, by "
            f"{failure.lower:.4f}") in message


def test_a_recommend_that_returns_the_popularity_list_is_refused_with_the_interval(tmp_path):
    # 60 users, each with two train movies and eval movies among 100-199; popularity is the
    # train split's most-rated movies, which no user rates in the eval split.
    rng = np.random.default_rng(0)
    users = np.arange(1, 61)
    train_users = np.repeat(users, 2)
    train_movies = np.concatenate([[1 + u % 7, 8 + u % 5] for u in users])
    eval_users = np.repeat(users, 3)
    eval_movies = np.concatenate([rng.choice(np.arange(100, 200), 3, replace=False)
                                  for _ in users])
    train, eval_ = topk.Ratings(train_users, train_movies), topk.Ratings(eval_users, eval_movies)
    order = topk.popularity_order(train_movies)
    seen = topk.eval_users(train, eval_).seen
    k = EVAL.topk_k
    popular = topk.popularity_lists(order, seen, k)
    candidate = save_recommender(tmp_path / "popular", dict(zip(users.tolist(), popular.tolist(),
                                                                 strict=True)))
    # The serving model finds two of each user's three eval movies.
    good = {int(u): [*eval_movies[3 * i:3 * i + 2].tolist(), *popular[i, :k - 2].tolist()]
            for i, u in enumerate(users)}
    blessed = save_recommender(tmp_path / "blessed", good)
    settings = topk.TopKSettings(**{f.name: getattr(EVAL, f.name)
                                    for f in dataclasses.fields(topk.TopKSettings)})
    result = topk.evaluate(train, eval_, {results.CANDIDATE: candidate,
                                          results.LATEST_BLESSED: blessed}, settings)
    assert not result.blessed
    failures = {f.rule.setting: f for f in result.failures}
    assert set(failures) == {"min_ndcg_over_popularity", "max_ndcg_regression_vs_blessed"}
    # The popularity list itself: a change of exactly 0, wholly below the margin.
    popularity = failures["min_ndcg_over_popularity"]
    assert (popularity.change, popularity.lower, popularity.upper) == (0.0, 0.0, 0.0)
    assert ("change +0.0000 (95% interval +0.0000 to +0.0000), allowed >= +0.0100: the whole "
            "interval is below it, by 0.0100") in popularity.message()
    worse = failures["max_ndcg_regression_vs_blessed"]
    assert worse.upper < -0.5
    assert worse.message().startswith(
        "overall top-k NDCG not confidently below the latest blessed model's minus a tolerance "
        "(EvalSettings.max_ndcg_regression_vs_blessed) failed on overall: NDCG@10 0.0000 vs "
        "latest blessed model ")
    assert f"(95% interval {worse.lower:+.4f} to {worse.upper:+.4f})" in worse.message()


def test_training_twice_gives_bit_identical_weights():
    """Both stages (the neural rating model, the retrieval model), from rows in two orders."""
    columns, genres = planted_interactions(per_user=15)
    columns[features.TIMESTAMP] = np.arange(len(columns[features.LABEL_XF]), dtype=np.int64)
    hp = dataclasses.replace(TWO_STAGE, model_type="neural", hidden_units=(16,), max_epochs=4,
                             retrieval=dataclasses.replace(TWO_STAGE.retrieval, max_epochs=6))
    weights = []
    for order in (np.arange(len(columns[features.LABEL_XF])),
                  np.random.default_rng(0).permutation(len(columns[features.LABEL_XF]))):
        rows = arrays.sort_rows({c: v[order] for c, v in columns.items()}, trainer.ROW_ORDER)
        module = trainer.fit_serving_module(hp, rows, list(USER_IDS), CATALOGUE_MOVIES,
                                            catalogue_of(genres), verbose=0)
        # By position: Keras numbers the layers' names anew in one process.
        weights.append([(v.name, v.numpy()) for v in module.variables])
    assert len(weights[0]) == len(weights[1]) > 10
    for (name, first), (_, second) in zip(*weights, strict=True):
        np.testing.assert_array_equal(first, second, err_msg=name)
