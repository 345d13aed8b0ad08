"""The BlessingGate component's body (components/evaluation/blessing_gate.py) run through its TFX
executor on real ModelBlessing / ModelEvaluation artifacts, without a pipeline: each of the three
evaluators' verdicts reaches the gate's blessing, and each failed rule its message.

`decide()` alone is tested in test_evaluation.py; these catch a verdict read from the wrong input
artifact (issue 25), which the end-to-end "bad model" run cannot, since it fails every rule. The
same files, written as TFX's Evaluator writes them, test results.load_evaluation.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.proto import metrics_for_slice_pb2
from tensorflow_model_analysis.writers import eval_config_writer
from tfx.types import standard_artifacts

from components.evaluation import blessing_gate, results, topk
from components.evaluation.metrics import (
    RMSE_CHANGE,
    RMSE_CHANGE_LOWER,
    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES,
    RMSE_CHANGE_UPPER,
)
from pipeline import configs
from pipeline.pipeline import make_eval_configs

# The rules, set here rather than following the pipeline's defaults: against the bias baseline,
# overall RMSE not confidently above its minus 0.005; against the blessed model, not confidently
# higher; NDCG@10 not confidently below popularity's, nor more than 0.01 below the blessed
# model's. The evaluations below have no spread (every user alike), so each interval is its
# change alone and a rule fails exactly when the change is beyond its bound.
SETTINGS = configs.EvalSettings(min_improvement_over_baseline=0.005, max_regression_vs_blessed=0.0)
TOPK = dataclasses.replace(topk.TopKSettings.from_json(topk.settings_json(SETTINGS)),
                           min_ndcg_over_popularity=0.0, max_ndcg_regression_vs_blessed=0.01)
USERS = 50


def write_rmse_evaluation(uri: str, baseline: str, candidate_rmse: float, baseline_rmse: float):
    """What the TFX Evaluator writes for the overall slice, as results.load_evaluation reads it:
    eval_config.json (the pipeline's EvalConfig of that baseline, with its thresholds), the
    metrics and TFMA's own validation of them."""
    os.makedirs(uri)
    config = tfma.utils.update_eval_config_with_defaults(make_eval_configs(SETTINGS)[baseline],
                                                         has_baseline=True)
    with open(os.path.join(uri, "eval_config.json"), "w") as f:
        f.write(eval_config_writer._serialize_eval_run(config, "", "", {}))
    metrics = {}
    for model, value in ((results.CANDIDATE, candidate_rmse), (baseline, baseline_rmse)):
        metrics[metric_types.MetricKey(name=results.RMSE, model_name=model)] = value
    # RatingErrors: the candidate's change and interval ends (all the change: no spread),
    # 0 for the baseline itself, and TFMA's diff, which the thresholds check.
    change = candidate_rmse - baseline_rmse
    for name in (RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER,
                 RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES):
        key = metric_types.MetricKey(name=name, model_name=results.CANDIDATE,
                                     example_weighted=None)
        metrics[key] = change
        metrics[key._replace(model_name=baseline)] = 0.0
        metrics[key.make_diff_key()] = change
    proto = metrics_for_slice_pb2.MetricsForSlice()
    for key, value in metrics.items():
        kv = proto.metric_keys_and_values.add()
        kv.key.CopyFrom(key.to_proto())
        kv.value.double_value.value = value
    validation = metrics_validator.validate_metrics(((), metrics), config)
    for name, record in (("metrics.tfrecord", proto), ("validations.tfrecord", validation)):
        with tf.io.TFRecordWriter(os.path.join(uri, name)) as writer:
            writer.write(record.SerializeToString())
    return validation.validation_ok


def write_topk_evaluation(uri: str, ndcg: dict[str, float]) -> bool:
    """topk_metrics.json as the TopKEvaluator writes it, for these overall NDCG@10s (every
    user's the same)."""
    intervals, failures = topk.check_rules(
        {m: np.full(USERS, v) for m, v in ndcg.items()}, TOPK)
    evaluation = topk.TopKEvaluation(
        uri=uri, k=10, catalogue_size=100, models=list(ndcg),
        metrics={m: {topk.OVERALL: {results.NDCG: v}} for m, v in ndcg.items()},
        counts={topk.OVERALL: {"users": USERS, "relevant": 400}}, cold_start_users=0,
        blessed=not failures, failures=failures, intervals=intervals)
    os.makedirs(uri)
    with open(os.path.join(uri, topk.METRICS_FILE), "w") as f:
        f.write(evaluation.to_json())
    return evaluation.blessed


def blessing(verdict: bool | None) -> standard_artifacts.ModelBlessing:
    """An evaluator's ModelBlessing: `blessed` set as TFX's Evaluator sets it, absent when it
    validated nothing (no baseline)."""
    artifact = standard_artifacts.ModelBlessing()
    if verdict is not None:
        artifact.set_int_custom_property("blessed", int(verdict))
    return artifact


def evaluation(uri: str) -> standard_artifacts.ModelEvaluation:
    artifact = standard_artifacts.ModelEvaluation()
    artifact.uri = uri
    return artifact


# A good candidate: RMSE 0.90 vs the bias baseline's 0.95 (0.05 lower, more than the 0.005
# margin) and vs the blessed model's 0.92; NDCG@10 0.30 vs popularity's 0.20 and the blessed
# model's 0.29. Each failing case changes one of them.
PASSING = {"bias": 0.95, "blessed": 0.92, "ndcg": {results.CANDIDATE: 0.30,
                                                   results.POPULARITY: 0.20,
                                                   results.LATEST_BLESSED: 0.29}}


def run_gate(tmp_path, bias_rmse, blessed_rmse, ndcg, blessed_validated=True):
    """Writes the three evaluations, runs BlessingGate's executor; returns its output blessing
    and verdict.json."""
    uris = {name: str(tmp_path / name) for name in ("bias", "blessed", "topk", "gate")}
    verdicts = {
        results.BIAS_BASELINE: write_rmse_evaluation(uris["bias"], results.BIAS_BASELINE,
                                                     0.90, bias_rmse),
        results.LATEST_BLESSED: write_rmse_evaluation(uris["blessed"], results.LATEST_BLESSED,
                                                      0.90, blessed_rmse),
        blessing_gate.TOPK_VERDICT: write_topk_evaluation(uris["topk"], ndcg),
    }
    if not blessed_validated:
        verdicts[results.LATEST_BLESSED] = None
    model = standard_artifacts.Model()
    model.uri, model.id = str(tmp_path / "model"), 7
    output = standard_artifacts.ModelBlessing()
    output.uri = uris["gate"]
    executor = blessing_gate.BlessingGate.EXECUTOR_SPEC.executor_class()
    executor.Do({"model": [model],
                 "baseline_evaluation": [evaluation(uris["bias"])],
                 "baseline_blessing": [blessing(verdicts[results.BIAS_BASELINE])],
                 "blessed_evaluation": [evaluation(uris["blessed"])],
                 "blessed_blessing": [blessing(verdicts[results.LATEST_BLESSED])],
                 "topk_evaluation": [evaluation(uris["topk"])],
                 "topk_blessing": [blessing(verdicts[blessing_gate.TOPK_VERDICT])]},
                {"blessing": [output]}, {})
    with open(os.path.join(uris["gate"], blessing_gate.VERDICT_FILE)) as f:
        return output, json.load(f), verdicts


def test_every_verdict_passing_blesses_the_model_with_no_failure(tmp_path):
    output, verdict, verdicts = run_gate(tmp_path, PASSING["bias"], PASSING["blessed"],
                                         PASSING["ndcg"])
    assert verdicts == {results.BIAS_BASELINE: True, results.LATEST_BLESSED: True,
                        blessing_gate.TOPK_VERDICT: True}
    assert output.get_int_custom_property(blessing_gate.BLESSED_KEY) == 1
    assert output.get_int_custom_property(blessing_gate.CURRENT_MODEL_ID_KEY) == 7
    assert output.get_string_custom_property(blessing_gate.CURRENT_MODEL_URI_KEY) == str(
        tmp_path / "model")
    assert output.get_string_custom_property(blessing_gate.FAILURES_KEY) == ""
    assert verdict == {"blessed": True, "evaluators": verdicts, "failures": []}


@pytest.mark.parametrize("failing, bias_rmse, blessed_rmse, ndcg, message", [
    # Candidate 0.90 vs the bias baseline's 0.903: 0.003 lower, the margin is 0.005: the whole
    # (degenerate) interval is 0.002 above the bound.
    (results.BIAS_BASELINE, 0.903, PASSING["blessed"], PASSING["ndcg"],
     "overall RMSE not confidently above the bias baseline's minus a margin "
     "(EvalSettings.min_improvement_over_baseline) failed on overall: root_mean_squared_error "
     "0.9000 vs bias baseline 0.9030, change -0.0030 (95% interval -0.0030 to -0.0030), "
     "allowed <= -0.0050: the whole interval is above it, by 0.0020"),
    # 0.90 vs the blessed model's 0.89: 0.01 worse, none allowed.
    (results.LATEST_BLESSED, PASSING["bias"], 0.89, PASSING["ndcg"],
     "overall RMSE not confidently above the latest blessed model's plus a tolerance "
     "(EvalSettings.max_regression_vs_blessed) failed on overall: root_mean_squared_error "
     "0.9000 vs latest blessed model 0.8900, change +0.0100 (95% interval +0.0100 to +0.0100), "
     "allowed <= +0.0000: the whole interval is above it, by 0.0100"),
    # NDCG@10 0.30 vs popularity's 0.31: 0.01 below, at least 0 above required.
    (blessing_gate.TOPK_VERDICT, PASSING["bias"], PASSING["blessed"],
     {**PASSING["ndcg"], results.POPULARITY: 0.31},
     "overall top-k NDCG not confidently below the popularity baseline's plus a margin "
     "(EvalSettings.min_ndcg_over_popularity) failed on overall: NDCG@10 0.3000 vs popularity "
     "baseline 0.3100, change -0.0100 (95% interval -0.0100 to -0.0100), allowed >= +0.0000: "
     "the whole interval is below it, by 0.0100"),
])
def test_one_failing_verdict_among_passing_ones_refuses_the_model_and_names_its_rule(
        tmp_path, failing, bias_rmse, blessed_rmse, ndcg, message):
    output, verdict, verdicts = run_gate(tmp_path, bias_rmse, blessed_rmse, ndcg)
    # Exactly the one evaluator refused: its own artifact carries the only False.
    assert verdicts == {name: name != failing for name in verdicts}
    assert output.get_int_custom_property(blessing_gate.BLESSED_KEY) == 0
    assert output.get_string_custom_property(blessing_gate.FAILURES_KEY) == message
    assert verdict == {"blessed": False, "evaluators": verdicts, "failures": [message]}


def test_on_the_first_run_the_blessed_model_comparison_is_skipped_and_reported_null(tmp_path):
    # The BlessedModelEvaluator had no baseline: its blessing has no verdict at all. The top-k
    # rule against the blessed model is skipped too (no LATEST_BLESSED NDCG).
    ndcg = {results.CANDIDATE: 0.30, results.POPULARITY: 0.20}
    output, verdict, verdicts = run_gate(tmp_path, PASSING["bias"], PASSING["blessed"], ndcg,
                                         blessed_validated=False)
    assert output.get_int_custom_property(blessing_gate.BLESSED_KEY) == 1
    assert verdict["evaluators"] == {results.BIAS_BASELINE: True, results.LATEST_BLESSED: None,
                                     blessing_gate.TOPK_VERDICT: True}


def test_load_evaluation_reads_every_metric_both_models_candidate_first_and_the_verdict(tmp_path):
    for name, baseline_rmse, ok in (("pass", 0.95, True), ("fail", 0.903, False)):
        uri = str(tmp_path / name)
        assert write_rmse_evaluation(uri, results.BIAS_BASELINE, 0.90, baseline_rmse) is ok
        evaluation = results.load_evaluation(uri)
        assert evaluation.uri == uri
        # The candidate first, whatever the names' order ("bias_baseline" < "candidate").
        assert evaluation.models == [results.CANDIDATE, results.BIAS_BASELINE]
        # Every metric of both models; the diffs TFMA stores beside them are not metrics.
        change = 0.90 - baseline_rmse
        paired = (RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER,
                  RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES)
        assert evaluation.metrics == {results.OVERALL: {
            results.CANDIDATE: {results.RMSE: 0.90, **{name: change for name in paired}},
            results.BIAS_BASELINE: {results.RMSE: baseline_rmse,
                                    **{name: 0.0 for name in paired}}}}
        assert evaluation.validation_ok is ok
        assert len(evaluation.failures) == (0 if ok else 1)


def test_an_evaluation_without_thresholds_has_no_verdict(tmp_path):
    # The first run's BlessedModelEvaluator: no model to compare with, so no threshold and no
    # validation file; its one model's metrics have an empty model name.
    uri = tmp_path / "first"
    uri.mkdir()
    config = tfma.EvalConfig(model_specs=[tfma.ModelSpec(name=results.CANDIDATE)],
                             metrics_specs=[tfma.MetricsSpec(metrics=[
                                 tfma.MetricConfig(class_name="ExampleCount")])])
    (uri / "eval_config.json").write_text(eval_config_writer._serialize_eval_run(config, "", "",
                                                                                 {}))
    proto = metrics_for_slice_pb2.MetricsForSlice()
    kv = proto.metric_keys_and_values.add()
    kv.key.name = results.RMSE
    kv.value.double_value.value = 0.9
    # Neither a diff (TFMA's, beside each metric) nor a value that is not a double is a metric.
    diff = proto.metric_keys_and_values.add()
    diff.key.CopyFrom(kv.key)
    diff.key.is_diff = True
    diff.value.double_value.value = 0.1
    plot = proto.metric_keys_and_values.add()
    plot.key.name = "calibration_plot"
    plot.value.bytes_value = b"not a number"
    with tf.io.TFRecordWriter(str(uri / "metrics.tfrecord")) as writer:
        writer.write(proto.SerializeToString())
    evaluation = results.load_evaluation(str(uri))
    assert evaluation.models == [results.CANDIDATE]
    assert evaluation.metrics == {results.OVERALL: {results.CANDIDATE: {results.RMSE: 0.9}}}
    assert evaluation.validation_ok is None and evaluation.failures == []
    assert evaluation.baseline is None
