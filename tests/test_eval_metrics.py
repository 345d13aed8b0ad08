"""The Evaluators' plain-Python metrics (components/evaluation/metrics.py) against numpy, through
both of their input paths: plain per-model values, and TFMA's general conversion."""

import math

import numpy as np
import pytest
from tensorflow_model_analysis.metrics import metric_types

from components.evaluation import metrics

LABELS = np.array([4.0, 3.5, 1.0, 5.0, 2.5])
CANDIDATE = np.array([3.6, 3.9, 2.1, 4.4, 2.5])
BASELINE = np.array([3.5, 3.5, 3.5, 3.5, 3.5])


def run(metric: metric_types.Metric, inputs: list, model_name: str) -> float:
    (computation,) = metric.computations(model_names=[model_name])
    combiner = computation.combiner
    accumulators = [combiner.create_accumulator(), combiner.create_accumulator()]
    for i, element in enumerate(inputs):  # two accumulators merged, as Beam may do
        accumulators[i % 2] = combiner.add_input(accumulators[i % 2], element)
    output = combiner.extract_output(combiner.merge_accumulators(accumulators))
    (value,) = output.values()
    (key,) = output
    assert key.model_name == model_name
    return value


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
@pytest.mark.parametrize("model_name,predictions", [("candidate", CANDIDATE),
                                                    ("baseline", BASELINE)])
def test_rmse_and_mae_match_numpy(as_lists, model_name, predictions):
    inputs = per_model_inputs(as_lists)
    error = LABELS - predictions
    assert run(metrics.RootMeanSquaredError(), inputs, model_name) == pytest.approx(
        math.sqrt(np.mean(error**2)), rel=1e-6)
    assert run(metrics.PlainMeanAbsoluteError(), inputs, model_name) == pytest.approx(
        np.mean(np.abs(error)), rel=1e-6)
    # TFMA's own MeanAbsoluteError reports under the same name.
    (key,) = metrics.PlainMeanAbsoluteError().computations(model_names=[model_name])[0].keys
    assert key.name == "mean_absolute_error"


def test_rmse_if_enough_examples_is_zero_below_the_minimum():
    inputs = per_model_inputs()
    rmse = math.sqrt(np.mean((LABELS - CANDIDATE) ** 2))
    assert run(metrics.RMSEIfEnoughExamples(min_examples=5), inputs, "candidate") == \
        pytest.approx(rmse, rel=1e-6)
    assert run(metrics.RMSEIfEnoughExamples(min_examples=6), inputs, "candidate") == 0.0


def test_a_slice_without_examples_is_nan():
    assert math.isnan(run(metrics.RootMeanSquaredError(), [], "candidate"))
