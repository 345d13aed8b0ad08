"""The Evaluators' plain-Python metric (components/evaluation/metrics.py, RatingErrors) against
numpy, through both of its input paths: plain per-model values, and TFMA's general conversion."""

import math

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation import bootstrap, metrics

LABELS = np.array([4.0, 3.5, 1.0, 5.0, 2.5])
CANDIDATE = np.array([3.6, 3.9, 2.1, 4.4, 2.5])
BASELINE = np.array([3.5, 3.5, 3.5, 3.5, 3.5])


def combine(metric: metric_types.Metric, inputs: list, model_names: list[str]) -> dict:
    """The metric's output over `inputs` for an evaluation of `model_names`:
    {model name: {metric name: value}}."""
    (computation,) = metric.computations(model_names=model_names)
    combiner = computation.combiner
    accumulators = [combiner.create_accumulator(), combiner.create_accumulator()]
    for i, element in enumerate(inputs):  # two accumulators merged, as Beam may do
        accumulators[i % 2] = combiner.add_input(accumulators[i % 2], element)
    output = combiner.extract_output(combiner.merge_accumulators(accumulators))
    assert set(output) == set(computation.keys)
    by_model: dict[str, dict[str, float]] = {}
    for key, value in output.items():
        by_model.setdefault(key.model_name, {})[key.name] = value
    assert set(by_model) == set(model_names)
    return by_model


def per_model_inputs(as_lists: bool = False) -> list:
    """One StandardMetricInputs per example, predictions keyed by model as TFMA's multi-model
    evaluation gives them; as_lists: values in a shape only TFMA's general path reads."""
    def value(x):
        return [float(x)] if as_lists else np.array([x], np.float32)
    return [metric_types.StandardMetricInputs(
        labels=value(label),
        predictions={"candidate": value(c), "baseline": value(b)},
        example_weights=np.array([1.0], np.float32))
        for label, c, b in zip(LABELS, CANDIDATE, BASELINE, strict=True)]


@pytest.mark.parametrize("as_lists", [False, True])
def test_rmse_and_mae_of_every_model_match_numpy(as_lists):
    out = combine(metrics.RatingErrors(), per_model_inputs(as_lists), ["candidate", "baseline"])
    for model, predictions in (("candidate", CANDIDATE), ("baseline", BASELINE)):
        error = LABELS - predictions
        # Without a baseline: RMSE and MAE only, under the names of TFMA's own metrics.
        assert set(out[model]) == {"root_mean_squared_error", "mean_absolute_error"}
        assert out[model][metrics.RMSE] == pytest.approx(math.sqrt(np.mean(error**2)), rel=1e-6)
        assert out[model][metrics.MAE] == pytest.approx(np.mean(np.abs(error)), rel=1e-6)


def test_one_model_evaluation_reads_unkeyed_predictions():
    inputs = [metric_types.StandardMetricInputs(
        labels=np.array([label]), predictions=np.array([c]), example_weights=np.array([1.0]))
        for label, c in zip(LABELS, CANDIDATE, strict=True)]
    out = combine(metrics.RatingErrors(), inputs, ["candidate"])["candidate"]
    assert out[metrics.MAE] == pytest.approx(np.mean(np.abs(LABELS - CANDIDATE)))


def paired_inputs(users, labels, candidate, baseline) -> list:
    """StandardMetricInputs as RatingErrors with a baseline gets them: both models' predictions
    and the example's user_id feature."""
    return [metric_types.StandardMetricInputs(
        labels=np.array([label], np.float32),
        predictions={"candidate": np.array([c], np.float32),
                     "baseline": np.array([b], np.float32)},
        example_weights=np.array([1.0], np.float32),
        features={"user_id": np.array([user])})
        for user, label, c, b in zip(users, labels, candidate, baseline, strict=True)]


def run_paired(inputs, model_name="candidate", models=("candidate", "baseline"), **config
               ) -> dict[str, float]:
    """model_name's outputs of RatingErrors with "baseline" as the baseline."""
    return combine(metrics.RatingErrors(baseline="baseline", **config), inputs,
                   list(models))[model_name]


def test_paired_error_change_is_the_bootstrap_over_users_of_both_models_errors():
    rng = np.random.default_rng(0)
    users = rng.integers(1, 30, 400)
    labels = rng.uniform(0.5, 5.0, 400)
    candidate, baseline = labels + rng.normal(0, 0.8, 400), labels + rng.normal(0, 1.0, 400)
    out = run_paired(paired_inputs(users, labels, candidate, baseline), samples=500, seed=3,
                     min_examples=400)
    rmse = lambda p: math.sqrt(np.mean((labels - p.astype(np.float32)) ** 2))  # noqa: E731
    assert out[metrics.RMSE_CHANGE] == pytest.approx(rmse(candidate) - rmse(baseline), rel=1e-5)
    # By hand: per user, the number of ratings and each model's summed squared error.
    ids = sorted(set(users.tolist()))
    sums = np.array([[np.sum(users == u),
                      np.sum((labels[users == u] - candidate[users == u].astype(np.float32))**2),
                      np.sum((labels[users == u] - baseline[users == u].astype(np.float32))**2)]
                     for u in ids])
    expected = bootstrap.error_change(sums[:, 0], sums[:, 1], sums[:, 2], True, 500, 0.95, 3)
    assert out[metrics.RMSE_CHANGE_LOWER] == pytest.approx(expected.lower, rel=1e-4)
    assert out[metrics.RMSE_CHANGE_UPPER] == pytest.approx(expected.upper, rel=1e-4)
    assert out[metrics.RMSE_CHANGE_LOWER] < out[metrics.RMSE_CHANGE] < \
        out[metrics.RMSE_CHANGE_UPPER] < 0
    assert out[metrics.MAE_CHANGE_LOWER] < out[metrics.MAE_CHANGE] < out[metrics.MAE_CHANGE_UPPER]
    assert out[metrics.RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES] == out[metrics.RMSE_CHANGE_LOWER]
    # A slice with fewer examples than min_examples: 0 for the genre rule's key only.
    small = run_paired(paired_inputs(users, labels, candidate, baseline), min_examples=401)
    assert small[metrics.RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES] == 0.0
    assert small[metrics.RMSE_CHANGE_LOWER] < 0


def test_paired_error_change_of_identical_models_is_exactly_zero_and_the_baselines_own_is_zero():
    users, labels = np.arange(50) % 7, np.linspace(0.5, 5.0, 50)
    predictions = labels + np.sin(np.arange(50))
    changes = [name for keys in metrics.CHANGE_KEYS.values() for name in keys] + [
        metrics.RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES]
    out = run_paired(paired_inputs(users, labels, predictions, predictions))
    assert {out[name] for name in changes} == {0.0}
    worse = paired_inputs(users, labels, predictions + 1, predictions)
    own = run_paired(worse, "baseline")
    assert {own[name] for name in changes} == {0.0}
    assert run_paired(worse)[metrics.RMSE_CHANGE] > 0


def test_paired_error_change_without_a_baseline_in_the_evaluation_is_nan():
    inputs = [metric_types.StandardMetricInputs(
        labels=np.array([4.0]), predictions=np.array([3.0]), example_weights=np.array([1.0]),
        features={"user_id": np.array([1])})]
    out = run_paired(inputs, models=("candidate",))
    assert out.pop(metrics.RMSE) == out.pop(metrics.MAE) == 1.0
    assert len(out) == 7 and all(math.isnan(v) for v in out.values())


def test_a_slice_without_examples_is_nan():
    assert all(math.isnan(v) for v in run_paired([]).values())


def test_earlier_runs_metric_names_resolve_to_rating_errors():
    assert metrics.RootMeanSquaredError is metrics.PairedErrorChange is metrics.RatingErrors
