"""`create_pipeline`: the MovieLens TFX pipeline, shared by every runner.

MovieLensExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> AnomaliesGate
-> Transform -> Trainer -> Evaluator -> Pusher
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import tensorflow_model_analysis as tfma

# Components are imported from their modules, not through `tfx.v1`: that also imports the Google
# Cloud AI Platform extensions, ~20 s of start-up for every process that builds the pipeline.
from tfx.components import Evaluator, ExampleValidator, Pusher, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2

from components.anomalies_gate import AnomaliesGate
from components.movielens_example_gen.component import MovieLensExampleGen
from components.movielens_example_gen.config import SplitConfig
from models import export, features
from models.hparams import HParams
from models.trainer import HPARAMS_KEY
from pipeline import configs

# TFX cache keys cover inputs and parameters but not the code behind a dotted-name function; this
# fingerprint of the models package makes an edited preprocessing_fn or model rerun its steps.
CODE_FINGERPRINT_KEY = "code_fingerprint"


def code_fingerprint() -> str:
    import models

    digest = hashlib.sha256()
    for path in sorted(Path(models.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def make_eval_config(settings: configs.EvalSettings) -> tfma.EvalConfig:
    """TFMA config: RMSE/MAE/example count overall and per genre; blessing thresholds."""
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(
            signature_name="serving_default", label_key=features.LABEL_KEY,
            prediction_key=export.PREDICTION_KEY)],
        slicing_specs=[
            tfma.SlicingSpec(),
            # Multi-valued: a movie tagged Comedy|Drama counts in both slices.
            tfma.SlicingSpec(feature_keys=[features.GENRES]),
        ],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(
                class_name="RootMeanSquaredError",
                # A plain `threshold` would apply to every genre slice too.
                per_slice_thresholds=[tfma.PerSliceMetricThreshold(
                    slicing_specs=[tfma.SlicingSpec()],
                    threshold=tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
                        upper_bound={"value": settings.rmse_upper_bound})))]),
            tfma.MetricConfig(class_name="MeanAbsoluteError"),
        ])],
    )


def create_pipeline(
    *,
    data_root: str,
    pipeline_root: str,
    serving_model_dir: str,
    pipeline_name: str = configs.PIPELINE_NAME,
    schema_path: str = str(configs.SCHEMA_PATH),
    split: SplitConfig = configs.SPLIT,
    hparams: HParams = configs.HPARAMS,
    eval_settings: configs.EvalSettings = configs.EVAL,
    beam_pipeline_args: list[str] | None = None,
    metadata_connection_config=None,
    enable_cache: bool = True,
) -> tfx_pipeline.Pipeline:
    """Builds the pipeline; every path may be local or a remote (gs://, s3://) URI."""
    example_gen = MovieLensExampleGen(input_base=data_root, split=split)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = ImportSchemaGen(schema_file=schema_path)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    anomalies_gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"])

    fingerprint = code_fingerprint()
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        # Vocabularies and statistics from the train split only: eval ids unseen in training
        # are out-of-vocabulary, as they would be in production.
        splits_config=transform_pb2.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
        custom_config={CODE_FINGERPRINT_KEY: fingerprint},
        # StatisticsGen already describes the raw data; Transform's own pre- and post-transform
        # statistics would double its run time for nothing the pipeline reads.
        disable_statistics=True,
    )
    # Nothing is transformed or trained on data that failed validation.
    transform.add_upstream_node(anomalies_gate)

    trainer = Trainer(
        run_fn=configs.RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
        custom_config={HPARAMS_KEY: hparams.to_config(), CODE_FINGERPRINT_KEY: fingerprint},
    )

    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        eval_config=make_eval_config(eval_settings),
        example_splits=["eval"],
    )

    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)),
    )

    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, anomalies_gate,
                    transform, trainer, evaluator, pusher],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args or [],
    )
