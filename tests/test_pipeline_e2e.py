"""The whole TFX pipeline on a generated MovieLens folder, with LocalDagRunner and Beam.

One run trains, evaluates, blesses and pushes; a rerun is served from the cache; data with an
out-of-range rating stops before Transform with a message naming the feature.
"""

import pytest
import tensorflow as tf
from movielens_fixture import write_movielens_fixture
from tfx.orchestration import metadata
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from components.anomalies_gate import DataAnomaliesError
from pipeline import configs, report
from pipeline.pipeline import create_pipeline

pytestmark = pytest.mark.e2e

COMPONENTS = {"MovieLensExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "AnomaliesGate", "Transform", "Trainer", "Evaluator", "Pusher"}


def run_pipeline(data_dir, root):
    pipeline = create_pipeline(
        data_root=str(data_dir),
        pipeline_root=str(root / "pipeline"),
        serving_model_dir=str(root / "serving_model" / configs.MODEL_NAME),
        beam_pipeline_args=configs.BEAM_PIPELINE_ARGS,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")),
    )
    LocalDagRunner().run(pipeline)


def executions_of_latest_run(root):
    """{component id: execution state name} for the newest pipeline run in root's metadata."""
    summary = report.summarize_latest_run(str(root / "metadata.sqlite"))
    return {node: state for node, (state, _) in summary.components.items()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data_dir = write_movielens_fixture(root / "data", n_users=100, ratings_per_user=(25, 50))
    run_pipeline(data_dir, root)
    first = executions_of_latest_run(root)
    summary = report.summarize_latest_run(str(root / "metadata.sqlite"))
    run_pipeline(data_dir, root)
    second = executions_of_latest_run(root)
    return root, first, second, summary


def test_every_component_ran(runs):
    _, first, _, _ = runs
    assert set(first) == COMPONENTS
    assert first == {node: "COMPLETE" for node in COMPONENTS}


def test_the_model_was_blessed_and_pushed_with_genre_metrics(runs):
    root, _, _, summary = runs
    assert summary.blessed is True
    versions = list((root / "serving_model" / configs.MODEL_NAME).iterdir())
    assert len(versions) == 1 and versions[0].name.isdigit()
    assert summary.pushed_to == str(versions[0])
    assert (versions[0] / "saved_model.pb").is_file()
    overall = summary.metrics["overall"]
    assert 0 < overall["root_mean_squared_error"] < configs.EVAL.rmse_upper_bound
    assert {"Drama", "Comedy", "(no genres listed)"} <= set(summary.metrics)
    assert sum(m["example_count"] for k, m in summary.metrics.items() if k != "overall") >= \
        overall["example_count"]  # multi-valued: a movie counts in each of its genres


def test_the_pushed_model_answers_both_signatures(runs):
    root, *_ = runs
    version = next((root / "serving_model" / configs.MODEL_NAME).iterdir())
    model = tf.saved_model.load(str(version))
    users, movies = [1, 2, 3, 999999], [3, 6, 9, 3]  # 999999: a user never seen
    examples = [tf.train.Example(features=tf.train.Features(feature={
        "user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[u])),
        "movie_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[m])),
    })).SerializeToString() for u, m in zip(users, movies, strict=True)]
    from_examples = model.signatures["serving_default"](examples=tf.constant(examples))["rating"]
    from_ids = model.signatures["predict_ids"](
        user_id=tf.constant(users, tf.int64), movie_id=tf.constant(movies, tf.int64))["rating"]
    assert from_examples.shape == (4,)
    assert tf.reduce_all((from_examples >= 0.5) & (from_examples <= 5.0))
    assert from_examples.numpy() == pytest.approx(from_ids.numpy(), abs=1e-6)


def test_a_rerun_with_unchanged_inputs_is_served_from_the_cache(runs):
    root, _, second, _ = runs
    assert second == {node: "CACHED" for node in COMPONENTS}
    assert len(list((root / "serving_model" / configs.MODEL_NAME).iterdir())) == 1


def test_anomalous_data_stops_the_pipeline_before_transform(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data",
                                       extra_rating_rows=["1,3,7.0,1200000001"])
    with pytest.raises(DataAnomaliesError) as e:
        run_pipeline(data_dir, tmp_path)
    assert "feature 'rating'" in str(e.value)
    assert "Out-of-range" in str(e.value) or "out of range" in str(e.value).lower()
    ran = executions_of_latest_run(tmp_path)
    assert "Transform" not in ran and "Trainer" not in ran
    assert ran["AnomaliesGate"] == "FAILED"
    assert not (tmp_path / "serving_model").exists()
