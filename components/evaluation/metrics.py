"""TFMA metrics in plain Python: RMSE, MAE, and RMSE for rules that need slices with enough
examples.

`RootMeanSquaredError` replaces the Keras metric of the same name: TFMA runs Keras metrics through
TensorFlow for every slice and model, which made each Evaluator ~4x slower on ml-latest-small
(29 slices, 2 models). `PlainMeanAbsoluteError` replaces TFMA's MeanAbsoluteError under the same
metric name. Each reads an example's label and prediction directly where they are plain values
(one float per model); TFMA's general `to_label_prediction_example_weight`, which also handles
class ids, top k and label vocabularies, took three quarters of an Evaluator's time
(docs/benchmarks.md, "Evaluator profile") and is kept for inputs of any other shape.

TFMA thresholds have no minimum slice size (`Options.min_slice_size` drops small slices, and the
validator then fails them with "Metric not found"). `RMSEIfEnoughExamples` is the RMSE of a slice
with at least `min_examples` examples and 0 for smaller ones, so a change threshold on it compares
candidate and baseline on large slices and sees a difference of 0 on small ones. The Evaluator
imports these by module and class name from the EvalConfig.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

RMSE = "root_mean_squared_error"
MAE = "mean_absolute_error"
RMSE_IF_ENOUGH_EXAMPLES = "rmse_if_enough_examples"


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


class RMSEIfEnoughExamples(metric_types.Metric):
    """RMSE of the slice when it has at least `min_examples` examples, else 0."""

    def __init__(self, name: str = RMSE_IF_ENOUGH_EXAMPLES, min_examples: int = 1):
        if min_examples < 1:
            raise ValueError(f"min_examples must be >= 1, got {min_examples}")
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         min_examples=min_examples, value="rmse")


class RootMeanSquaredError(metric_types.Metric):
    """sqrt(mean((label - prediction)^2)), unweighted, as tf.keras.metrics.RootMeanSquaredError."""

    def __init__(self, name: str = RMSE):
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         min_examples=0, value="rmse")


class PlainMeanAbsoluteError(metric_types.Metric):
    """mean(|label - prediction|), unweighted, under the name of TFMA's MeanAbsoluteError (whose
    class name TFMA would resolve to its own class, whatever the module)."""

    def __init__(self, name: str = MAE):
        super().__init__(metric_util.merge_per_key_computations(_computations), name=name,
                         min_examples=0, value="mae")


def _computations(name: str, min_examples: int, value: str,
                  eval_config: config_pb2.EvalConfig | None = None,
                  model_name: str = "", output_name: str = "",
                  sub_key: metric_types.SubKey | None = None) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key)
    return [metric_types.MetricComputation(
        keys=[key], preprocessors=None,
        combiner=_Combiner(key, eval_config, min_examples, value))]


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
                 min_examples: int, value: str):
        self._key = key
        self._eval_config = eval_config
        self._min_examples = min_examples
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
        if acc.count < self._min_examples:
            return {self._key: 0.0}
        return {self._key: self._value(acc)}
