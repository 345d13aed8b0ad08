"""TFMA metrics in plain Python: RMSE, MAE, and the paired change in RMSE and MAE between the
candidate and the baseline with its bootstrap interval, which the blessing rules check.

`RootMeanSquaredError` replaces the Keras metric of the same name: TFMA runs Keras metrics through
TensorFlow for every slice and model, which made each Evaluator ~4x slower on ml-latest-small
(29 slices, 2 models). `PlainMeanAbsoluteError` replaces TFMA's MeanAbsoluteError under the same
metric name. Each reads an example's label and prediction directly where they are plain values
(one float per model); TFMA's general `to_label_prediction_example_weight`, which also handles
class ids, top k and label vocabularies, took three quarters of an Evaluator's time
(docs/benchmarks.md, "Evaluator profile") and is kept for inputs of any other shape.

TFMA checks thresholds on values, and its confidence intervals are only reported, so the rules
need a metric whose value is the bound. `PairedErrorChange` accumulates both models' squared and
absolute errors per user on the same examples and reports, for the candidate, the change in RMSE
and MAE (candidate - baseline) and the paired bootstrap interval of each over users
(components/evaluation/bootstrap.py); for the baseline model itself it reports 0, so that TFMA's
diff (candidate - baseline) is the candidate's value, and a change threshold on the interval's
lower end is a rule that TFX drops when there is no baseline (the first run). TFMA thresholds have
no minimum slice size (`Options.min_slice_size` drops small slices, and the validator then fails
them with "Metric not found"), so `rmse_change_lower_if_enough_examples` is the lower end on slices
with at least `min_examples` examples and 0 on smaller ones. The Evaluator imports these by module
and class name from the EvalConfig (pipeline/pipeline.py, make_eval_configs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from components.evaluation import bootstrap
from models import features

RMSE = "root_mean_squared_error"
MAE = "mean_absolute_error"
# PairedErrorChange's outputs: the change (candidate - baseline) and its interval's ends.
RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER = (
    "rmse_change", "rmse_change_lower", "rmse_change_upper")
MAE_CHANGE, MAE_CHANGE_LOWER, MAE_CHANGE_UPPER = (
    "mae_change", "mae_change_lower", "mae_change_upper")
RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES = "rmse_change_lower_if_enough_examples"
# metric -> the names of its change, and of its interval's lower and upper ends.
CHANGE_KEYS = {RMSE: (RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER),
               MAE: (MAE_CHANGE, MAE_CHANGE_LOWER, MAE_CHANGE_UPPER)}


@dataclasses.dataclass
class _Accumulator:
    count: int = 0
    squared_error: float = 0.0
    absolute_error: float = 0.0


# What a metric reports of the accumulated errors. By name: a Metric's arguments are its config,
# which TFMA serialises.
_VALUES: dict[str, Callable[[_Accumulator], float]] = {
    "rmse": lambda acc: math.sqrt(acc.squared_error / acc.count),
    "mae": lambda acc: acc.absolute_error / acc.count,
}


class RootMeanSquaredError(metric_types.Metric):
    """sqrt(mean((label - prediction)^2)), unweighted, as tf.keras.metrics.RootMeanSquaredError."""

    def __init__(self, name: str = RMSE):
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         value="rmse")


class PlainMeanAbsoluteError(metric_types.Metric):
    """mean(|label - prediction|), unweighted, under the name of TFMA's MeanAbsoluteError (whose
    class name TFMA would resolve to its own class, whatever the module)."""

    def __init__(self, name: str = MAE):
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         value="mae")


def _computations(name: str, value: str,
                  eval_config: config_pb2.EvalConfig | None = None,
                  model_name: str = "", output_name: str = "",
                  sub_key: metric_types.SubKey | None = None) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=None,
        combiner=_Combiner(key, eval_config, value))]


def _plain(value: object, names: tuple[str, ...]) -> np.ndarray | None:
    """`value` looked up by model and output name where it is keyed by them, as float64 [n];
    None when it is not a plain number or array after that (then TFMA's general path decides)."""
    for name in names:
        if name and isinstance(value, Mapping) and name in value:
            value = value[name]
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        return value.reshape(-1).astype(np.float64, copy=False)
    if isinstance(value, (float, int, np.floating, np.integer)):
        return np.array([value], np.float64)
    return None


def labels_and_predictions(element: metric_types.StandardMetricInputs,
                           key: metric_types.MetricKey,
                           eval_config: config_pb2.EvalConfig | None
                           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The example's (label, prediction) pairs for the key's model and output."""
    names = (key.model_name, key.output_name)
    label, prediction = _plain(element.label, names), _plain(element.prediction, names)
    if (key.sub_key is None and label is not None and prediction is not None
            and label.shape == prediction.shape):
        yield label, prediction
        return
    for label, prediction, _ in metric_util.to_label_prediction_example_weight(
            element, eval_config=eval_config, model_name=key.model_name,
            output_name=key.output_name, sub_key=key.sub_key):
        yield label, prediction


class _Combiner(beam.CombineFn):
    def __init__(self, key: metric_types.MetricKey, eval_config: config_pb2.EvalConfig | None,
                 value: str):
        self._key = key
        self._eval_config = eval_config
        self._value = _VALUES[value]

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator()

    def add_input(self, acc: _Accumulator, element: metric_types.StandardMetricInputs
                  ) -> _Accumulator:
        for label, prediction in labels_and_predictions(element, self._key, self._eval_config):
            error = label - prediction
            acc.count += error.size
            acc.squared_error += float(np.dot(error, error))
            acc.absolute_error += float(np.abs(error).sum())
        return acc

    def merge_accumulators(self, accs: Iterable[_Accumulator]) -> _Accumulator:
        result = _Accumulator()
        for acc in accs:
            result.count += acc.count
            result.squared_error += acc.squared_error
            result.absolute_error += acc.absolute_error
        return result

    def extract_output(self, acc: _Accumulator) -> dict[metric_types.MetricKey, float]:
        if acc.count == 0:
            return {self._key: math.nan}
        return {self._key: self._value(acc)}


@dataclasses.dataclass(frozen=True)
class BootstrapSettings:
    """The bootstrap of PairedErrorChange: EvalSettings' fields of the same names."""

    samples: int
    confidence: float
    seed: int


class PairedErrorChange(metric_types.Metric):
    """The candidate's change in RMSE and MAE against `baseline` (a model name of the EvalConfig)
    on the same examples, with paired bootstrap intervals over the examples' users; 0 for the
    baseline model itself, NaN when the evaluation has no baseline. Outputs the keys of
    CHANGE_KEYS and RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES (see the module docstring)."""

    def __init__(self, name: str = RMSE_CHANGE, baseline: str = "", samples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, min_examples: int = 1):
        if not baseline:
            raise ValueError("PairedErrorChange needs the baseline's model name")
        super().__init__(metric_util.merge_per_key_computations(_paired_computations),
                         name=name, baseline=baseline, samples=samples, confidence=confidence,
                         seed=seed, min_examples=min_examples)


def _paired_computations(name: str, baseline: str, samples: int, confidence: float, seed: int,
                         min_examples: int, eval_config: config_pb2.EvalConfig | None = None,
                         model_name: str = "", output_name: str = "",
                         sub_key: metric_types.SubKey | None = None
                         ) -> metric_types.MetricComputations:
    del name  # the outputs have fixed names
    # example_weighted None, as the keys of the MetricsSpec thresholds on them are
    # (metric_specs.metric_thresholds_from_metrics_specs); with False they would not match, and
    # TFMA would fail the thresholds as "Metric not found".
    keys = {key_name: metric_types.MetricKey(name=key_name, model_name=model_name,
                                             output_name=output_name, sub_key=sub_key,
                                             example_weighted=None)
            for key_name in (*(k for keys in CHANGE_KEYS.values() for k in keys),
                             RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES)}
    combiner = _PairedCombiner(
        keys, baseline, eval_config, BootstrapSettings(samples, confidence, seed), min_examples)
    return [metric_types.MetricComputation(
        keys=list(keys.values()),
        # The examples' user ids besides labels and predictions: the bootstrap resamples users.
        preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[features.USER_ID])],
        combiner=combiner)]


class _PairedCombiner(beam.CombineFn):
    """Per user: [ratings, candidate's and baseline's squared errors, their absolute errors]."""

    def __init__(self, keys: dict[str, metric_types.MetricKey], baseline: str,
                 eval_config: config_pb2.EvalConfig | None, settings: BootstrapSettings,
                 min_examples: int):
        self._keys = keys
        self._candidate = keys[RMSE_CHANGE]
        self._baseline = self._candidate._replace(model_name=baseline)
        # The baseline's own computation: its change against itself is 0.
        self._is_baseline = self._candidate.model_name == baseline
        self._eval_config = eval_config
        self._settings = settings
        self._min_examples = min_examples

    def create_accumulator(self) -> dict[int, list[float]]:
        return {}

    def add_input(self, acc: dict[int, list[float]], element: metric_types.StandardMetricInputs
                  ) -> dict[int, list[float]]:
        predictions = element.prediction
        if self._is_baseline or not (isinstance(predictions, Mapping)
                                     and self._baseline.model_name in predictions):
            return acc
        users = np.asarray(element.features[features.USER_ID]).reshape(-1)
        pairs = zip(labels_and_predictions(element, self._candidate, self._eval_config),
                    labels_and_predictions(element, self._baseline, self._eval_config),
                    strict=True)
        for (label, candidate), (_, baseline) in pairs:
            for user, c, b in zip(np.broadcast_to(users, label.shape).tolist(),
                                  (label - candidate).tolist(), (label - baseline).tolist(),
                                  strict=True):
                sums = acc.setdefault(user, [0.0] * 5)
                sums[0] += 1.0
                sums[1] += c * c
                sums[2] += b * b
                sums[3] += abs(c)
                sums[4] += abs(b)
        return acc

    def merge_accumulators(self, accs: Iterable[dict[int, list[float]]]
                           ) -> dict[int, list[float]]:
        result: dict[int, list[float]] = {}
        for acc in accs:
            for user, sums in acc.items():
                total = result.setdefault(user, [0.0] * 5)
                for i, value in enumerate(sums):
                    total[i] += value
        return result

    def extract_output(self, acc: dict[int, list[float]]) -> dict[metric_types.MetricKey, float]:
        if self._is_baseline:
            return {key: 0.0 for key in self._keys.values()}
        if not acc:  # no baseline in this evaluation, or no example in the slice
            return {key: math.nan for key in self._keys.values()}
        sums = np.array([acc[user] for user in sorted(acc)])
        s = self._settings
        out = {}
        for metric, root, column in ((RMSE, True, 1), (MAE, False, 3)):
            interval = bootstrap.error_change(sums[:, 0], sums[:, column], sums[:, column + 1],
                                              root, s.samples, s.confidence, s.seed)
            change, lower, upper = CHANGE_KEYS[metric]
            out.update({self._keys[change]: interval.change, self._keys[lower]: interval.lower,
                        self._keys[upper]: interval.upper})
        enough = sums[:, 0].sum() >= self._min_examples
        out[self._keys[RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES]] = (
            out[self._keys[RMSE_CHANGE_LOWER]] if enough else 0.0)
        return out
