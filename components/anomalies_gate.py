"""AnomaliesGate: stops the pipeline before Transform/Trainer when ExampleValidator found anomalies.

ExampleValidator only records anomalies; this component turns them into a failure whose message
names each split, feature and reason, e.g.
    split 'train', feature 'rating': Out-of-range values: Unexpectedly large value: 7.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.component.experimental.annotations import InputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(RuntimeError):
    """New data does not match the curated schema."""


def _reasons(reasons) -> str:
    return "; ".join(f"{r.short_description}: {r.description}" for r in reasons)


def describe_anomalies(anomalies: standard_artifacts.ExampleAnomalies) -> list[str]:
    """One line per anomaly: split, feature, short description and description."""
    problems = []
    for split in artifact_utils.decode_split_names(anomalies.split_names):
        path = os.path.join(artifact_utils.get_split_uri([anomalies], split), ANOMALIES_FILE)
        result = anomalies_pb2.Anomalies()
        with tf.io.gfile.GFile(path, "rb") as f:
            result.ParseFromString(f.read())
        for feature, info in sorted(result.anomaly_info.items()):
            reasons = _reasons(info.reason) or info.description
            problems.append(f"split {split!r}, feature {feature!r}: {reasons}")
        if result.HasField("dataset_anomaly_info"):
            problems.append(
                f"split {split!r}, dataset: {_reasons(result.dataset_anomaly_info.reason)}")
    return problems


@component
def AnomaliesGate(  # noqa: N802 - TFX component names are classes
    anomalies: InputArtifact[standard_artifacts.ExampleAnomalies],
) -> None:
    """Raises DataAnomaliesError listing every anomaly; passes silently on clean data."""
    problems = describe_anomalies(anomalies)
    if problems:
        raise DataAnomaliesError(
            "ExampleValidator found anomalies against the curated schema (schema/schema.pbtxt); "
            "the pipeline stops before training:\n  " + "\n  ".join(problems)
            + f"\nFull report: {anomalies.uri}")
