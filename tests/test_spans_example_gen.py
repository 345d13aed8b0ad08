"""MovieLensExampleGen on a data folder in spans: TFX's driver resolves {SPAN} to the newest span,
and the executor reads the window of spans ending there (pipeline/spans.py cuts the folder)."""

import os

import numpy as np
import tensorflow as tf
from google.protobuf import message
from movielens_fixture import write_movielens_fixture
from tfx.components.example_gen.driver import FileBasedDriver
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.movielens_example_gen import executor as executor_lib
from components.movielens_example_gen.component import MovieLensExampleGen
from pipeline import configs, spans


def run_spans(data_dir, out_dir, window):
    component = MovieLensExampleGen(
        str(data_dir), span_window=window,
        user_activity_edges=configs.EVAL.user_activity_edges,
        movie_popularity_edges=configs.EVAL.movie_popularity_edges)
    props = {k: proto_utils.proto_to_json(v) if isinstance(v, message.Message) else v
             for k, v in component.exec_properties.items()}
    # What the orchestrator does before the executor: the pattern's {SPAN} resolved.
    props = FileBasedDriver(metadata_handle=None).resolve_exec_properties(props, None, None)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--runner=DirectRunner"])
    executor_lib.Executor(context).Do({}, {"examples": [examples]}, props)
    timestamps = []
    for name in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(out_dir, f"Split-{name}", "*"))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            timestamps.append(example.features.feature["timestamp"].int64_list.value[0])
    return props, np.sort(timestamps)


def span_times(folder, span):
    lines = (folder / f"span-{span}" / "ratings.csv").read_text().splitlines()[1:]
    return [int(line.rsplit(",", 1)[1]) for line in lines]


def test_the_newest_span_is_resolved_and_the_window_before_it_read(tmp_path):
    source = write_movielens_fixture(tmp_path / "flat")
    folder = tmp_path / "spans"
    spans.cut(source, folder, 3)
    props, times = run_spans(folder, tmp_path / "out2", window=2)
    assert props["span"] == 3
    assert props["input_config"].count("span-3/ratings.csv") == 1
    np.testing.assert_array_equal(times, np.sort(span_times(folder, 2) + span_times(folder, 3)))
    _, times = run_spans(folder, tmp_path / "out1", window=1)
    np.testing.assert_array_equal(times, np.sort(span_times(folder, 3)))
