"""Blessing rules and slices without a pipeline run: TFMA's own validator on our EvalConfigs, whose
thresholds are on the lower end of the RMSE change's interval (RatingErrors)."""

import dataclasses
import math

import pytest
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation import blessing_gate, results
from components.evaluation.metrics import (
    RMSE_CHANGE,
    RMSE_CHANGE_LOWER,
    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES,
    RMSE_CHANGE_UPPER,
)
from components.movielens_example_gen import slicing
from models import features
from pipeline import configs
from pipeline.pipeline import make_eval_configs

SETTINGS = configs.EvalSettings(min_improvement_over_baseline=0.005, max_regression_vs_blessed=0.0,
                                genre_min_examples=100, genre_tolerance=0.02)


def validate(baseline: str, slice_key, metric: str, lower: float) -> list:
    """Failures TFMA's validator reports when the candidate's `metric` (the lower end of an
    interval of the change) is `lower` on one slice; the baseline reports 0 for itself."""
    # Every thresholded metric must be present, or TFMA fails it as "Metric not found".
    metrics = {}
    for name in (RMSE_CHANGE_LOWER, RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES):
        value = lower if name == metric else -1.0
        # example_weighted None: RatingErrors' change keys, as the thresholds' are.
        key = metric_types.MetricKey(name=name, model_name=results.CANDIDATE,
                                     example_weighted=None)
        metrics[key] = value
        metrics[key._replace(model_name=baseline)] = 0.0
        metrics[key.make_diff_key()] = value
    # As the TFX Evaluator prepares it: model names filled in the metrics specs.
    config = tfma.utils.update_eval_config_with_defaults(make_eval_configs(SETTINGS)[baseline],
                                                         has_baseline=True)
    result = metrics_validator.validate_metrics((slice_key, metrics), config)
    return [f for s in result.metric_validations_per_slice for f in s.failures]


# The margin is 0.005: refused when the whole interval of the change lies above -0.005.
@pytest.mark.parametrize("lower, passes",
                         [(-0.01, True), (-0.0051, True), (-0.0049, False), (0.01, False)])
def test_overall_rmse_must_not_be_confidently_above_the_bias_baseline_minus_the_margin(lower,
                                                                                       passes):
    failures = validate(results.BIAS_BASELINE, (), RMSE_CHANGE_LOWER, lower)
    assert (failures == []) == passes


@pytest.mark.parametrize("lower, passes", [(-0.01, True), (0.0, True), (0.0001, False)])
def test_overall_rmse_must_not_be_confidently_above_the_blessed_models(lower, passes):
    failures = validate(results.LATEST_BLESSED, (), RMSE_CHANGE_LOWER, lower)
    assert (failures == []) == passes


@pytest.mark.parametrize("lower, passes", [(0.01, True), (0.019, True), (0.021, False)])
def test_genre_rmse_not_confidently_above_the_bias_baselines_plus_the_tolerance(lower, passes):
    genre = ((features.GENRES, b"Drama"),)
    failures = validate(results.BIAS_BASELINE, genre, RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES, lower)
    assert (failures == []) == passes


def test_genre_rule_only_applies_to_genre_slices_and_overall_rmse_rule_only_overall():
    # A large change on a user-activity slice or an overall genre-metric change is not a rule.
    bucket = ((features.USER_ACTIVITY, b"0"),)
    assert validate(results.BIAS_BASELINE, bucket, RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES, 1.0) == []
    assert validate(results.BIAS_BASELINE, bucket, RMSE_CHANGE_LOWER, 1.0) == []
    genre = ((features.GENRES, b"Drama"),)
    assert validate(results.BIAS_BASELINE, genre, RMSE_CHANGE_LOWER, 1.0) == []


def test_the_gate_needs_all_three_evaluators_and_skips_a_missing_blessed_model():
    assert blessing_gate.decide(True, None, True) is True  # first run: nothing blessed before
    assert blessing_gate.decide(True, True, True) is True
    assert blessing_gate.decide(True, False, True) is False
    assert blessing_gate.decide(False, True, True) is False
    assert blessing_gate.decide(True, True, False) is False  # the top-k rules alone refuse it
    assert blessing_gate.decide(True, None, False) is False
    with pytest.raises(blessing_gate.EvaluatorVerdictError) as e:
        blessing_gate.decide(None, True, True)
    assert str(e.value) == (
        "the Evaluator against the bias baseline validated no threshold; its EvalConfig must "
        "compare the candidate with the BaselineTrainer's model")
    with pytest.raises(blessing_gate.EvaluatorVerdictError) as e:
        blessing_gate.decide(True, True, None)
    assert str(e.value) == "the TopKEvaluator's blessing has no verdict"


def test_every_rule_names_an_eval_settings_field():
    fields = {f.name for f in dataclasses.fields(configs.EvalSettings)}
    assert {rule.setting for rule in results.RULES.values()} <= fields


def test_the_readmes_rule_table_is_results_rules():
    """The rules' text lives in results.RULES (the report and the failure messages use it);
    the README's table must say the same, in the same order, with each rule's setting."""
    text = (configs.REPO_ROOT / "README.md").read_text()
    table = text[text.index("| rule (`components/evaluation/results.py`, `RULES`) |"):]
    rows = [line.split(" | ") for line in table.splitlines()[2:] if line.startswith("| ")]
    rows = rows[:len(results.RULES)]
    assert [row[0].removeprefix("| ") for row in rows] == [
        rule.title for rule in results.RULES.values()]
    for row, rule in zip(rows, results.RULES.values(), strict=True):
        assert f"`{rule.setting}`" in row[1], rule


@pytest.mark.parametrize("field, value", [("genre_tolerance", -0.1),
                                          ("min_improvement_over_baseline", 2.0),
                                          ("genre_min_examples", 0),
                                          ("user_activity_edges", (20, 1)),
                                          ("topk_k", 0), ("topk_k", 2.5),
                                          ("min_ndcg_over_popularity", -0.01),
                                          ("max_ndcg_regression_vs_blessed", 1.0),
                                          ("bootstrap_samples", 0), ("confidence", 1.0),
                                          ("confidence", 0.2), ("bootstrap_seed", -1)])
def test_eval_settings_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"EvalSettings.{field}"):
        dataclasses.replace(configs.EVAL, **{field: value})


def test_activity_buckets():
    assert slicing.bucket_labels((1, 20, 101)) == ["0", "1-19", "20-100", "101+"]
    assert [slicing.bucket_label(n, (1, 20, 101)) for n in (0, 1, 19, 20, 100, 101)] == [
        "0", "1-19", "1-19", "20-100", "20-100", "101+"]
    assert slicing.bucket_labels((20, 100)) == ["0-19", "20-99", "100+"]


def _validation_failure(metric: str, direction, absolute: float | None = -0.01,
                        relative: float | None = None):
    from tensorflow_model_analysis.proto import validation_result_pb2

    failure = validation_result_pb2.ValidationFailure()
    failure.metric_key.name = metric
    failure.metric_key.model_name = results.CANDIDATE
    change = failure.metric_threshold.change_threshold
    change.direction = direction
    if absolute is not None:
        change.absolute.value = absolute
    if relative is not None:
        change.relative.value = relative
    failure.metric_value.double_value.value = 0.02
    return failure


def test_a_failed_threshold_maps_to_its_rule_and_any_other_is_an_error():
    lower, higher = (tfma.MetricDirection.LOWER_IS_BETTER, tfma.MetricDirection.HIGHER_IS_BETTER)
    # The candidate's RMSE 1.02 vs the baseline's 1.0: RatingErrors' change +0.02 with
    # its interval +0.012 to +0.031, the baseline 0 for itself.
    change = {RMSE_CHANGE: 0.02, RMSE_CHANGE_LOWER: 0.012, RMSE_CHANGE_UPPER: 0.031}
    evaluation = results.Evaluation(
        uri="eval-uri", models=[results.CANDIDATE, results.BIAS_BASELINE],
        metrics={results.OVERALL: {
            results.CANDIDATE: {results.RMSE: 1.02, **change},
            results.BIAS_BASELINE: {results.RMSE: 1.0, **{k: 0.0 for k in change}}}},
        validation_ok=False, failures=[], confidence=0.9)
    # The pipeline's own rule, a threshold on the interval's lower end: allowed <= -0.01.
    failure = results.failure_of(evaluation, results.OVERALL,
                                 _validation_failure(RMSE_CHANGE_LOWER, lower))
    assert failure == results.Failure(
        rule=results.RULES[(results.BIAS_BASELINE, RMSE_CHANGE_LOWER)],
        baseline=results.BIAS_BASELINE, slice=results.OVERALL, metric=results.RMSE,
        candidate_value=1.02, baseline_value=1.0, change=0.02, allowed_change=-0.01,
        lower=0.012, upper=0.031, confidence=0.9)
    assert failure.excess == pytest.approx(0.022)  # 0.012 - (-0.01)
    # Anything else failing means the EvalConfig has a threshold this code does not know:
    # another metric, a relative bound, a higher-is-better direction, or no baseline model.
    others = [(evaluation, _validation_failure(results.MAE, lower)),
              (evaluation, _validation_failure(RMSE_CHANGE_LOWER, lower, None, relative=0.1)),
              (evaluation, _validation_failure(RMSE_CHANGE_LOWER, higher)),
              (dataclasses.replace(evaluation, models=[results.CANDIDATE]),
               _validation_failure(RMSE_CHANGE_LOWER, lower))]
    for which, other in others:
        with pytest.raises(ValueError, match="eval-uri: a threshold this pipeline does not "
                                             "configure failed on genres = Drama: "):
            results.failure_of(which, (features.GENRES, "Drama"), other)


def test_slice_keys_of_tfma_protos():
    from tensorflow_model_analysis.proto import metrics_for_slice_pb2

    def key(*singles):
        proto = metrics_for_slice_pb2.SliceKey()
        for column, value in singles:
            single = proto.single_slice_keys.add(column=column)
            if isinstance(value, bytes):
                single.bytes_value = value
            else:
                single.int64_value = value
        return proto

    assert results._slice_key(key()) == results.OVERALL
    # String features come as bytes, integer ones as int64: both become text.
    assert results._slice_key(key((features.GENRES, b"Drama"))) == (features.GENRES, "Drama")
    assert results._slice_key(key(("year_bucket", 3))) == ("year_bucket", "3")
    with pytest.raises(ValueError, match="unexpected feature cross in slice single_slice_keys"):
        results._slice_key(key((features.GENRES, b"Drama"), ("year_bucket", 3)))


def test_a_missing_metric_is_nan_and_a_zero_bound_prints_as_plus_zero():
    evaluation = results.Evaluation(uri="u", models=[results.CANDIDATE], metrics={
        results.OVERALL: {results.CANDIDATE: {results.RMSE: 1.0}}}, validation_ok=None,
        failures=[])
    assert evaluation.value(results.OVERALL, results.CANDIDATE, results.RMSE) == 1.0
    for key, model, metric in [(results.OVERALL, results.CANDIDATE, results.MAE),
                               (results.OVERALL, results.BIAS_BASELINE, results.RMSE),
                               ((features.GENRES, "Drama"), results.CANDIDATE, results.RMSE)]:
        assert math.isnan(evaluation.value(key, model, metric))
    assert results.slice_name((features.GENRES, "Drama")) == "genres = Drama"
    assert results.slice_name(results.OVERALL) == "overall"
    # max_ndcg_regression_vs_blessed = 0 makes the allowed change -0.0: shown as +0.0000.
    failure = results.Failure(
        rule=results.RULES[(results.LATEST_BLESSED, results.NDCG)],
        baseline=results.LATEST_BLESSED, slice=results.OVERALL, metric="NDCG@10",
        candidate_value=0.2, baseline_value=0.25, change=-0.05, allowed_change=-0.0,
        lower=-0.07, upper=-0.03, confidence=0.95, higher_is_better=True)
    assert failure.message().endswith(
        "failed on overall: NDCG@10 0.2000 vs latest blessed model 0.2500, change -0.0500 (95% "
        "interval -0.0700 to -0.0300), allowed >= +0.0000: the whole interval is below it, by "
        "0.0300")


def test_the_intervals_confidence_comes_from_the_rating_errors_config():
    def config(metric_config: str) -> tfma.EvalConfig:
        return tfma.EvalConfig(metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name=results.RatingErrors.__name__,
                              config=metric_config)])])

    assert results._confidence(config('{"confidence": 0.9}')) == 0.9
    # No confidence configured, no config at all, no such metric, no EvalConfig: unknown.
    assert math.isnan(results._confidence(config('{"samples": 10}')))
    assert math.isnan(results._confidence(config("")))
    assert math.isnan(results._confidence(tfma.EvalConfig()))
    assert math.isnan(results._confidence(None))
