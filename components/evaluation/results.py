"""Reading what the Evaluators wrote: metrics per slice and model, the intervals of the changes,
and failed blessing rules.

Names shared by the EvalConfigs (pipeline/pipeline.py), the TopKEvaluator, the BlessingGate, the
report and the run summary live here: the model names of the candidate and its baselines, the
metrics, and the blessing rules with the EvalSettings field each one is configured by. Every rule
decides on the interval of a change (candidate - baseline; components/evaluation/bootstrap.py):
it fails only when the whole interval lies beyond the allowed change.
"""

from __future__ import annotations

import dataclasses
import json
import math

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.writers.eval_config_writer import load_eval_run

from components.evaluation import bootstrap
from components.evaluation.metrics import (
    CHANGE_KEYS,
    RMSE,
    RMSE_CHANGE_LOWER,
    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES,
    RatingErrors,
)

# TFMA model names (ModelSpec.name) in the two evaluations: candidate vs bias baseline, and
# candidate vs the latest blessed model.
CANDIDATE = "candidate"
BIAS_BASELINE = "bias_baseline"
LATEST_BLESSED = "latest_blessed"
# The TopKEvaluator's baseline: the k most-rated train-split movies the user has not rated.
POPULARITY = "popularity"
MODEL_TITLES = {CANDIDATE: "candidate", BIAS_BASELINE: "bias baseline",
                LATEST_BLESSED: "latest blessed model", POPULARITY: "popularity baseline"}

MAE = "mean_absolute_error"
EXAMPLE_COUNT = "example_count"
# The top-k rules' metric (models.ranking_metrics.METRICS), at k = EvalSettings.topk_k.
NDCG = "ndcg"

# A slice: (feature, value), or OVERALL.
SliceKey = tuple[str, str]
OVERALL: SliceKey = ("", "")


@dataclasses.dataclass(frozen=True)
class Rule:
    title: str
    setting: str  # the field of pipeline.configs.EvalSettings that configures it


# (baseline model name, metric name) -> the blessing rule its threshold implements: TFMA change
# thresholds on the lower end of the RMSE change's interval (pipeline.make_eval_configs), and the
# TopKEvaluator's NDCG@k rules. "Confidently": the whole interval of the change.
RULES = {
    (BIAS_BASELINE, RMSE_CHANGE_LOWER): Rule(
        "overall RMSE not confidently above the bias baseline's minus a margin",
        "min_improvement_over_baseline"),
    (LATEST_BLESSED, RMSE_CHANGE_LOWER): Rule(
        "overall RMSE not confidently above the latest blessed model's plus a tolerance",
        "max_regression_vs_blessed"),
    (BIAS_BASELINE, RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES): Rule(
        "RMSE of every genre with enough eval ratings not confidently above the bias "
        "baseline's plus a tolerance", "genre_tolerance"),
    (POPULARITY, NDCG): Rule("overall top-k NDCG not confidently below the popularity "
                             "baseline's plus a margin", "min_ndcg_over_popularity"),
    (LATEST_BLESSED, NDCG): Rule("overall top-k NDCG not confidently below the latest blessed "
                                 "model's minus a tolerance", "max_ndcg_regression_vs_blessed"),
}


def slice_name(key: SliceKey) -> str:
    return "overall" if key == OVERALL else f"{key[0]} = {key[1]}"


@dataclasses.dataclass(frozen=True)
class Failure:
    """A blessing rule that did not hold on one slice: the whole interval of the change lies
    beyond the allowed change."""

    rule: Rule
    baseline: str  # model name
    slice: SliceKey
    metric: str
    candidate_value: float
    baseline_value: float
    change: float  # candidate - baseline
    # The change's interval must reach <= this (lower is better: RMSE), or >= it when
    # higher_is_better (NDCG).
    allowed_change: float
    lower: float  # the change's interval, at `confidence`
    upper: float
    confidence: float
    higher_is_better: bool = False

    @property
    def interval(self) -> bootstrap.Interval:
        return bootstrap.Interval(self.change, self.lower, self.upper, self.confidence)

    @property
    def excess(self) -> float:
        """How far the interval's nearer end missed the allowed change, > 0."""
        return (self.allowed_change - self.upper if self.higher_is_better
                else self.lower - self.allowed_change)

    def message(self) -> str:
        bound, side = (">=", "below") if self.higher_is_better else ("<=", "above")
        return (f"{self.rule.title} (EvalSettings.{self.rule.setting}) failed on "
                f"{slice_name(self.slice)}: {self.metric} {self.candidate_value:.4f} vs "
                f"{MODEL_TITLES[self.baseline]} {self.baseline_value:.4f}, change "
                f"{self.interval.describe()}, allowed {bound} "
                f"{self.allowed_change + 0.0:+.4f}: the whole interval is {side} it, by "
                f"{self.excess:.4f}")


@dataclasses.dataclass
class Evaluation:
    """One Evaluator's output: the models it compared, their metrics and its verdict."""

    uri: str
    models: list[str]
    # slice -> model name -> metric name -> value
    metrics: dict[SliceKey, dict[str, dict[str, float]]]
    # None when the evaluation had no threshold to check (no baseline: the first run).
    validation_ok: bool | None
    failures: list[Failure]
    confidence: float = math.nan  # of the intervals of RatingErrors

    def interval(self, key: SliceKey, metric: str = RMSE) -> bootstrap.Interval:
        """The candidate's change in `metric` (RMSE, MAE) against the baseline on this slice,
        with its interval; NaNs when there is no baseline."""
        return bootstrap.Interval(*(self.value(key, CANDIDATE, name)
                                    for name in CHANGE_KEYS[metric]), self.confidence)

    @property
    def baseline(self) -> str | None:
        others = [m for m in self.models if m != CANDIDATE]
        return others[0] if others else None

    def value(self, key: SliceKey, model: str, metric: str) -> float:
        return self.metrics.get(key, {}).get(model, {}).get(metric, math.nan)


def _slice_key(proto) -> SliceKey:
    if not proto.single_slice_keys:
        return OVERALL
    if len(proto.single_slice_keys) != 1:
        raise ValueError(f"unexpected feature cross in slice {proto}")
    single = proto.single_slice_keys[0]
    kind = single.WhichOneof("kind")
    value = getattr(single, kind)
    return single.column, value.decode() if isinstance(value, bytes) else str(value)


def load_evaluation(uri: str) -> Evaluation:
    """Reads a TFX Evaluator's ModelEvaluation folder."""
    metrics: dict[SliceKey, dict[str, dict[str, float]]] = {}
    models: set[str] = set()
    for per_slice in tfma.load_metrics(uri, output_file_format=""):
        key = _slice_key(per_slice.slice_key)
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or not kv.value.HasField("double_value"):
                continue
            # With one model (the first run), TFMA leaves the model name empty.
            model = kv.key.model_name or CANDIDATE
            models.add(model)
            metrics.setdefault(key, {}).setdefault(model, {})[kv.key.name] = \
                kv.value.double_value.value
    eval_config = load_eval_run(uri)[0]
    evaluation = Evaluation(uri=uri, models=sorted(models, key=lambda m: m != CANDIDATE),
                            metrics=metrics, validation_ok=None, failures=[],
                            confidence=_confidence(eval_config))
    has_thresholds = eval_config is not None and bool(
        tfma.metrics.metric_thresholds_from_metrics_specs(eval_config.metrics_specs,
                                                          eval_config=eval_config))
    if has_thresholds:
        validation = tfma.load_validation_result(uri)
        evaluation.validation_ok = validation.validation_ok
        for per_slice in validation.metric_validations_per_slice:
            key = _slice_key(per_slice.slice_key)
            for failure in per_slice.failures:
                evaluation.failures.append(failure_of(evaluation, key, failure))
    return evaluation


def _confidence(eval_config) -> float:
    """The confidence of the RatingErrors metric's intervals in this EvalConfig."""
    for spec in eval_config.metrics_specs if eval_config is not None else ():
        for metric in spec.metrics:
            if metric.class_name == RatingErrors.__name__:
                return float(json.loads(metric.config or "{}").get("confidence", math.nan))
    return math.nan


def failure_of(evaluation: Evaluation, key: SliceKey, failure) -> Failure:
    """The Failure of a failed TFMA threshold (a ValidationFailure proto) on slice `key`."""
    name = failure.metric_key.name
    baseline = evaluation.baseline or ""
    threshold = failure.metric_threshold.change_threshold
    rule = RULES.get((baseline, name))
    if rule is None or not threshold.HasField("absolute") or \
            threshold.direction != config_pb2.MetricDirection.LOWER_IS_BETTER:
        raise ValueError(f"{evaluation.uri}: a threshold this pipeline does not configure "
                         f"failed on {slice_name(key)}: {failure}")
    interval = evaluation.interval(key, RMSE)
    return Failure(rule=rule, baseline=baseline, slice=key, metric=RMSE,
                   candidate_value=evaluation.value(key, CANDIDATE, RMSE),
                   baseline_value=evaluation.value(key, baseline, RMSE),
                   change=interval.change, allowed_change=threshold.absolute.value,
                   lower=interval.lower, upper=interval.upper, confidence=interval.confidence)
