"""The Evaluators' TFMA metric in plain Python: every model's RMSE and MAE, and the candidate's
paired change in both against the baseline with its bootstrap interval, which the blessing rules
check; one combiner, one pass over each example and slice.

TFMA runs a metric's combiner for every example in every slice it belongs to (overall, its
genres, its user-activity and movie-popularity buckets: about six on MovieLens), so the per-call
cost is the Evaluator's cost. Keras metrics run through TensorFlow per slice and model (~4x
slower); TFMA's general `to_label_prediction_example_weight`, which also handles class ids, top k
and label vocabularies, took three quarters of an Evaluator's time; and separate RMSE, MAE and
paired-change metrics per model read the same label and predictions six times (docs/
benchmarks.md, "Evaluator profile"). `RatingErrors` reads an example's label and each model's
prediction once where they are plain values (one float per model), falls back to TFMA's general
conversion for inputs of any other shape, and reports under the names of TFMA's metrics
(`root_mean_squared_error`, `mean_absolute_error`).

TFMA checks thresholds on values, and its confidence intervals are only reported, so the rules
need a metric whose value is the bound. With a `baseline` (a model name of the EvalConfig),
RatingErrors also accumulates every model's squared and absolute errors per user and reports, for
each other model, the change in RMSE and MAE (model - baseline) and the paired bootstrap interval
of each over users (components/evaluation/bootstrap.py); for the baseline itself it reports 0, so
that TFMA's diff (candidate - baseline) is the candidate's value, and a change threshold on the
interval's lower end is a rule that TFX drops when there is no baseline (the first run). TFMA
thresholds have no minimum slice size (`Options.min_slice_size` drops small slices, and the
validator then fails them with "Metric not found"), so `rmse_change_lower_if_enough_examples` is
the lower end on slices with at least `min_examples` examples and 0 on smaller ones. The
Evaluator imports the metric by module and class name from the EvalConfig (pipeline/pipeline.py,
make_eval_configs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types, metric_util
from tensorflow_model_analysis.proto import config_pb2

from components.evaluation import bootstrap
from models import features

RMSE = "root_mean_squared_error"
MAE = "mean_absolute_error"
# RatingErrors' outputs with a baseline: the change (candidate - baseline) and its interval's ends.
RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER = (
    "rmse_change", "rmse_change_lower", "rmse_change_upper")
MAE_CHANGE, MAE_CHANGE_LOWER, MAE_CHANGE_UPPER = (
    "mae_change", "mae_change_lower", "mae_change_upper")
RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES = "rmse_change_lower_if_enough_examples"
# metric -> the names of its change, and of its interval's lower and upper ends.
CHANGE_KEYS = {RMSE: (RMSE_CHANGE, RMSE_CHANGE_LOWER, RMSE_CHANGE_UPPER),
               MAE: (MAE_CHANGE, MAE_CHANGE_LOWER, MAE_CHANGE_UPPER)}


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


@dataclasses.dataclass(frozen=True)
class BootstrapSettings:
    """The bootstrap of RatingErrors: EvalSettings' fields of the same names."""

    samples: int
    confidence: float
    seed: int




class RatingErrors(metric_types.Metric):
    """Every model's RMSE and MAE (unweighted); with a `baseline` model name, each model's change
    in both against it on the same examples, with paired bootstrap intervals over the examples'
    users: 0 for the baseline itself, NaN when the evaluation has no baseline. Outputs RMSE, MAE
    and, with a baseline, the keys of CHANGE_KEYS and RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES (see
    the module docstring)."""

    def __init__(self, name: str = "rating_errors", baseline: str = "", samples: int = 1000,
                 confidence: float = 0.95, seed: int = 0, min_examples: int = 1):
        super().__init__(_computations, name=name, baseline=baseline, samples=samples,
                         confidence=confidence, seed=seed, min_examples=min_examples)


def _computations(name: str, baseline: str, samples: int, confidence: float, seed: int,
                  min_examples: int, eval_config: config_pb2.EvalConfig | None = None,
                  model_names: list[str] | None = None, output_names: list[str] | None = None,
                  sub_keys: list[metric_types.SubKey | None] | None = None
                  ) -> metric_types.MetricComputations:
    """One computation per output and sub key, covering every model."""
    del name  # the outputs have fixed names
    settings = BootstrapSettings(samples, confidence, seed)
    computations = []
    for output_name in output_names or [""]:
        for sub_key in sub_keys or [None]:
            combiner = _Combiner(model_names or [""], output_name, sub_key, baseline,
                                 eval_config, settings, min_examples)
            computations.append(metric_types.MetricComputation(
                keys=combiner.keys(),
                # The bootstrap resamples users: the examples' user ids besides labels and
                # predictions.
                preprocessors=([metric_types.FeaturePreprocessor(
                    feature_keys=[features.USER_ID])] if baseline else None),
                combiner=combiner))
    return computations


@dataclasses.dataclass
class _Accumulator:
    # Per model: [ratings, summed squared error, summed absolute error].
    totals: list[list[float]]
    # With a baseline, per user: [ratings, then each model's squared and absolute errors].
    users: dict[int, list[float]]


class _Combiner(beam.CombineFn):
    def __init__(self, model_names: list[str], output_name: str,
                 sub_key: metric_types.SubKey | None, baseline: str,
                 eval_config: config_pb2.EvalConfig | None, settings: BootstrapSettings,
                 min_examples: int):
        self._models = [metric_types.MetricKey(name=RMSE, model_name=m, output_name=output_name,
                                               sub_key=sub_key) for m in model_names]
        self._baseline = baseline
        # Paired per user only where the baseline is in this evaluation.
        self._paired = baseline in model_names
        self._eval_config = eval_config
        self._settings = settings
        self._min_examples = min_examples

    def keys(self) -> list[metric_types.MetricKey]:
        keys = [k._replace(name=name) for k in self._models for name in (RMSE, MAE)]
        return keys + [key for k in self._models for key in self._change_keys(k).values()]

    def _change_keys(self, model: metric_types.MetricKey) -> dict[str, metric_types.MetricKey]:
        """The change keys of a model; example_weighted None, as the keys of the MetricsSpec
        thresholds on them are (metric_specs.metric_thresholds_from_metrics_specs): with False
        they would not match, and TFMA would fail the thresholds as "Metric not found"."""
        if not self._baseline:
            return {}
        return {name: model._replace(name=name, example_weighted=None)
                for name in (*(k for keys in CHANGE_KEYS.values() for k in keys),
                             RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES)}

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator([[0.0, 0.0, 0.0] for _ in self._models], {})

    def _errors(self, element: metric_types.StandardMetricInputs,
                key: metric_types.MetricKey) -> list[float]:
        errors: list[float] = []
        for label, prediction in labels_and_predictions(element, key, self._eval_config):
            errors += (label - prediction).tolist()
        return errors

    def add_input(self, acc: _Accumulator, element: metric_types.StandardMetricInputs
                  ) -> _Accumulator:
        errors = [self._errors(element, key) for key in self._models]
        for total, model_errors in zip(acc.totals, errors, strict=True):
            for error in model_errors:
                total[0] += 1.0
                total[1] += error * error
                total[2] += abs(error)
        if self._paired:
            users = np.asarray(element.features[features.USER_ID]).reshape(-1).tolist()
            for j, user in enumerate(users * len(errors[0]) if len(users) == 1 else users):
                sums = acc.users.setdefault(user, [0.0] * (1 + 2 * len(self._models)))
                sums[0] += 1.0
                for i, model_errors in enumerate(errors):
                    sums[1 + 2 * i] += model_errors[j] * model_errors[j]
                    sums[2 + 2 * i] += abs(model_errors[j])
        return acc

    def merge_accumulators(self, accs: Iterable[_Accumulator]) -> _Accumulator:
        result = self.create_accumulator()
        for acc in accs:
            for total, other in zip(result.totals, acc.totals, strict=True):
                for i, value in enumerate(other):
                    total[i] += value
            for user, sums in acc.users.items():
                into = result.users.setdefault(user, [0.0] * len(sums))
                for i, value in enumerate(sums):
                    into[i] += value
        return result

    def extract_output(self, acc: _Accumulator) -> dict[metric_types.MetricKey, float]:
        out: dict[metric_types.MetricKey, float] = {}
        for key, (count, squared, absolute) in zip(self._models, acc.totals, strict=True):
            out[key] = math.sqrt(squared / count) if count else math.nan
            out[key._replace(name=MAE)] = absolute / count if count else math.nan
        per_user = np.array([acc.users[user] for user in sorted(acc.users)])
        for i, key in enumerate(self._models):
            out.update(self._changes(key, per_user, i))
        return out

    def _changes(self, model: metric_types.MetricKey, per_user: np.ndarray, i: int
                 ) -> dict[metric_types.MetricKey, float]:
        """The model's change keys; per_user [users, 1 + 2 * models] (the accumulator's)."""
        keys = self._change_keys(model)
        if model.model_name == self._baseline:
            return {key: 0.0 for key in keys.values()}
        if not self._paired or not len(per_user):  # no baseline here, or an empty slice
            return {key: math.nan for key in keys.values()}
        b = [m.model_name for m in self._models].index(self._baseline)
        s, out = self._settings, {}
        for metric, root, column in ((RMSE, True, 1), (MAE, False, 2)):
            interval = bootstrap.error_change(
                per_user[:, 0], per_user[:, column + 2 * i], per_user[:, column + 2 * b], root,
                s.samples, s.confidence, s.seed)
            change, lower, upper = CHANGE_KEYS[metric]
            out.update({keys[change]: interval.change, keys[lower]: interval.lower,
                        keys[upper]: interval.upper})
        enough = per_user[:, 0].sum() >= self._min_examples
        out[keys[RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES]] = (
            out[keys[RMSE_CHANGE_LOWER]] if enough else 0.0)
        return out


# The metrics RatingErrors replaced, by the names that EvalConfigs stored by earlier runs give
# them: loading such an evaluation (results.load_evaluation) resolves them to it.
RootMeanSquaredError = PlainMeanAbsoluteError = PairedErrorChange = RatingErrors
