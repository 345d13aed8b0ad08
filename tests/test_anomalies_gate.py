"""AnomaliesGate's message names the split, the feature and the reason."""

import os

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.types import artifact_utils, standard_artifacts

from components.anomalies_gate import ANOMALIES_FILE, describe_anomalies


def _write(uri, split, anomalies):
    path = os.path.join(uri, f"Split-{split}")
    os.makedirs(path)
    with open(os.path.join(path, ANOMALIES_FILE), "wb") as f:
        f.write(anomalies.SerializeToString())


def test_describe_anomalies_lists_each_feature_and_reason(tmp_path):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    bad = anomalies_pb2.Anomalies()
    info = bad.anomaly_info["rating"]
    reason = info.reason.add()
    reason.short_description = "Out-of-range values"
    reason.description = "Unexpectedly large value: 7."
    _write(str(tmp_path), "train", bad)
    _write(str(tmp_path), "eval", anomalies_pb2.Anomalies())
    assert describe_anomalies(artifact) == [
        "split 'train', feature 'rating': Out-of-range values: Unexpectedly large value: 7."]
