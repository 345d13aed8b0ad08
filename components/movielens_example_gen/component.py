"""MovieLensExampleGen: a file-based ExampleGen that reads and joins MovieLens CSVs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tfx.components import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import channel, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

from components.movielens_example_gen import executor, slicing
from components.movielens_example_gen.config import SPAN_PATTERN, SplitConfig


class MovieLensExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    """FileBasedExampleGen's spec plus the split settings of `SplitConfig`."""

    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        "split_method": ExecutionParameter(type=str),
        "eval_fraction": ExecutionParameter(type=float),
        "seed": ExecutionParameter(type=int),
        "max_rejected_fraction": ExecutionParameter(type=float),
        # JSON lists of ints: the bucket edges of the user_activity / movie_popularity slices.
        executor.USER_ACTIVITY_EDGES_KEY: ExecutionParameter(type=str),
        executor.MOVIE_POPULARITY_EDGES_KEY: ExecutionParameter(type=str),
        executor.SPAN_WINDOW_KEY: ExecutionParameter(type=int),
    }


class MovieLensExampleGen(FileBasedExampleGen):
    """Emits tf.Examples (user_id, movie_id, rating, timestamp, genres, title, year, and the
    user_activity and movie_popularity evaluation slices) in two splits.

    A FileBasedExampleGen with its own spec and executor. Being one keeps its driver, which
    fingerprints the input files (a rerun on unchanged CSVs is a cache hit, a changed file reruns
    the pipeline from here), also on Kubeflow, where TFX runs that driver only for
    FileBasedExampleGens.
    """

    SPEC_CLASS = MovieLensExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    # DRIVER_CLASS is FileBasedExampleGen's: driver.FileBasedDriver.

    def __init__(self, input_base: str, *, user_activity_edges: Sequence[int],
                 movie_popularity_edges: Sequence[int], split: SplitConfig | None = None,
                 span_window: int = 0):
        """user_activity_edges, movie_popularity_edges: bucket edges of the numbers of train-split
        ratings of the example's user and movie (see slicing.py), e.g. (1, 20, 101).
        span_window: 0 for a flat folder; N >= 1 for a folder in spans (config.SPAN_PATTERN),
        of which each run reads the newest N as one data set."""
        split = split or SplitConfig()
        if span_window < 0:
            raise ValueError(f"span_window must be >= 0, got {span_window}")
        spec = MovieLensExampleGenSpec(
            input_base=input_base,
            # Flat: the pattern only drives the fingerprint (the executor opens ratings.csv and
            # movies.csv by name): a change to any CSV of the folder invalidates the cache. In
            # spans: TFX's driver resolves {SPAN} to the newest span, whose file is fingerprinted
            # (spans are append-only: a new one reruns the pipeline, an older one is not
            # watched) and whose number the Examples artifact carries.
            input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
                name="all", pattern=SPAN_PATTERN if span_window else "*.csv")]),
            output_config=example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
                # hash_buckets are required by the proto but unused: the executor splits.
                example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=1),
                example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1),
            ])),
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            split_method=split.method,
            eval_fraction=split.eval_fraction,
            seed=split.seed,
            max_rejected_fraction=split.max_rejected_fraction,
            **{executor.SPAN_WINDOW_KEY: span_window,
               executor.USER_ACTIVITY_EDGES_KEY: json.dumps(slicing.check_edges(
                   user_activity_edges, "user_activity_edges")),
               executor.MOVIE_POPULARITY_EDGES_KEY: json.dumps(slicing.check_edges(
                   movie_popularity_edges, "movie_popularity_edges"))},
            examples=channel.Channel(type=standard_artifacts.Examples),
        )
        # FileBasedExampleGen.__init__ would build its own spec; ours adds the split parameters.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
