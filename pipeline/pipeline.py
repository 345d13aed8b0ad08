"""`create_pipeline`: the MovieLens TFX pipeline, shared by every runner.

MovieLensExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> AnomaliesGate
   + SpanDrift (a folder in spans: the newest span against the previous one)
-> Transform -> Trainer + BaselineTrainer (bias only) + LatestBlessedModelResolver
-> Evaluator (vs the bias baseline) + BlessedModelEvaluator (vs the latest blessed model)
   + TopKEvaluator (top-k lists vs popularity and the latest blessed model)
-> BlessingGate -> ServingCheck (the blessed model loads in a server and answers) -> Pusher
-> EvaluationReportGen

As in TFX's templates, `create_pipeline` takes everything it needs as arguments: the runners
(pipeline/local_runner.py, pipeline/kubeflow_runner.py) and the tests pass pipeline/configs.py's
values in. The module functions (preprocessing_fn, run_fn) are dotted names, so building the
pipeline imports no model code.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import tensorflow_model_analysis as tfma

# Components are imported from their modules, not through `tfx.v1`: that also imports the Google
# Cloud AI Platform extensions, seconds of start-up for every process that builds the pipeline
# (docs/benchmarks.md, "Measurements behind settings").
from tfx.components import Evaluator, ExampleValidator, StatisticsGen, Trainer, Transform
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.common.resolver import Resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy,
)
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import pusher_pb2, trainer_pb2, transform_pb2
from tfx.types import Channel, standard_artifacts

from components.anomalies_gate import AnomaliesGate
from components.atomic_pusher import AtomicPusher
from components.evaluation import results, topk
from components.evaluation.blessing_gate import BlessingGate
from components.evaluation.eval_sample import EvalSample
from components.evaluation.metrics import (
    RMSE_CHANGE_LOWER,
    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES,
    RatingErrors,
)
from components.evaluation.report_gen import EvaluationReportGen
from components.movielens_example_gen.component import MovieLensExampleGen
from components.movielens_example_gen.config import SplitConfig
from components.serving_check import ServingCheck
from components.span_drift import SpanDrift
from models import contract, features
from models.hparams import HParams
from pipeline.fingerprints import models_fingerprint

if TYPE_CHECKING:  # a type only: the values come from the caller
    from pipeline.configs import EvalSettings

# TFX cache keys cover inputs and parameters but not the code behind a dotted-name function; the
# models package's fingerprint (pipeline/fingerprints.py) in custom_config makes an edited
# preprocessing_fn or model rerun its steps.
CODE_FINGERPRINT_KEY = "code_fingerprint"

# Component ids, in pipeline order: ML Metadata, the run summary, the Kubeflow runner and the tests
# find components by these.
EXAMPLE_GEN_ID = "MovieLensExampleGen"
STATISTICS_GEN_ID = "StatisticsGen"
SCHEMA_GEN_ID = "ImportSchemaGen"
EXAMPLE_VALIDATOR_ID = "ExampleValidator"
ANOMALIES_GATE_ID = "AnomaliesGate"
SPAN_DRIFT_ID = "SpanDrift"
TRANSFORM_ID = "Transform"
TRAINER_ID = "Trainer"
BASELINE_TRAINER_ID = "BaselineTrainer"
BLESSED_MODEL_RESOLVER_ID = "LatestBlessedModelResolver"
EVAL_SAMPLE_ID = "EvalSample"
EVALUATOR_ID = "Evaluator"
BLESSED_MODEL_EVALUATOR_ID = "BlessedModelEvaluator"
TOPK_EVALUATOR_ID = "TopKEvaluator"
BLESSING_GATE_ID = "BlessingGate"
SERVING_CHECK_ID = "ServingCheck"
PUSHER_ID = "Pusher"
REPORT_GEN_ID = "EvaluationReportGen"
COMPONENT_IDS = (EXAMPLE_GEN_ID, STATISTICS_GEN_ID, SCHEMA_GEN_ID, EXAMPLE_VALIDATOR_ID,
                 ANOMALIES_GATE_ID, SPAN_DRIFT_ID, TRANSFORM_ID, TRAINER_ID, BASELINE_TRAINER_ID,
                 BLESSED_MODEL_RESOLVER_ID, EVAL_SAMPLE_ID, EVALUATOR_ID,
                 BLESSED_MODEL_EVALUATOR_ID, TOPK_EVALUATOR_ID, BLESSING_GATE_ID, SERVING_CHECK_ID,
                 PUSHER_ID, REPORT_GEN_ID)


def _model_specs(baseline: str) -> list[tfma.ModelSpec]:
    """The candidate and a baseline, all called through the same serving signature."""
    common = dict(signature_name=contract.SERVING_DEFAULT, label_key=features.LABEL_KEY,
                  prediction_key=contract.RATING)
    return [tfma.ModelSpec(name=results.CANDIDATE, **common),
            tfma.ModelSpec(name=baseline, is_baseline=True, **common)]


def _slicing_specs() -> list[tfma.SlicingSpec]:
    return [
        tfma.SlicingSpec(),
        # Multi-valued: a movie tagged Comedy|Drama counts in both slices.
        tfma.SlicingSpec(feature_keys=[features.GENRES]),
        # Buckets of train-split rating counts; "0" is cold start.
        tfma.SlicingSpec(feature_keys=[features.USER_ACTIVITY]),
        tfma.SlicingSpec(feature_keys=[features.MOVIE_POPULARITY]),
    ]


def _change_threshold(slicing_spec: tfma.SlicingSpec, allowed: float
                      ) -> tfma.PerSliceMetricThreshold:
    """Candidate's value - baseline's <= allowed on the slices of `slicing_spec`."""
    return tfma.PerSliceMetricThreshold(
        slicing_specs=[slicing_spec],
        threshold=tfma.MetricThreshold(change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={"value": allowed})))


def make_eval_configs(settings: EvalSettings) -> dict[str, tfma.EvalConfig]:
    """TFMA configs of the two Evaluators, keyed by baseline model name; the blessing rules.

    Both compute example counts and RatingErrors overall, per genre, per user activity and per
    movie popularity bucket: each model's RMSE and MAE, and the candidate's change in both
    against the baseline with its paired bootstrap interval over users
    (EvalSettings.bootstrap_samples, .confidence, .bootstrap_seed). Thresholds, on the lower end
    of the RMSE change's interval (the baseline reports 0 there, so TFMA's diff is the
    candidate's value; a plain `threshold` would apply to every slice):
      against the bias baseline: overall, lower end <= -min_improvement_over_baseline; on every
        genre with >= genre_min_examples ratings, lower end <= genre_tolerance;
      against the latest blessed model: overall, lower end <= max_regression_vs_blessed
        (TFX drops change thresholds when there is no baseline: skipped on the first run).
    """
    def metrics(baseline: str, thresholds: dict[str, list[tfma.PerSliceMetricThreshold]]
                ) -> list[tfma.MetricsSpec]:
        errors = {"baseline": baseline, "samples": settings.bootstrap_samples,
                  "confidence": settings.confidence, "seed": settings.bootstrap_seed,
                  "min_examples": settings.genre_min_examples}
        return [tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name=RatingErrors.__name__, module=RatingErrors.__module__,
                              config=json.dumps(errors, sort_keys=True)),
        ], per_slice_thresholds={name: tfma.PerSliceMetricThresholds(thresholds=per_slice)
                                 for name, per_slice in thresholds.items()})]

    overall = tfma.SlicingSpec()
    genres = tfma.SlicingSpec(feature_keys=[features.GENRES])
    return {
        results.BIAS_BASELINE: tfma.EvalConfig(
            model_specs=_model_specs(results.BIAS_BASELINE),
            slicing_specs=_slicing_specs(),
            metrics_specs=metrics(results.BIAS_BASELINE, {
                RMSE_CHANGE_LOWER: [_change_threshold(
                    overall, -settings.min_improvement_over_baseline)],
                RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES: [_change_threshold(
                    genres, settings.genre_tolerance)]})),
        results.LATEST_BLESSED: tfma.EvalConfig(
            model_specs=_model_specs(results.LATEST_BLESSED),
            slicing_specs=_slicing_specs(),
            metrics_specs=metrics(results.LATEST_BLESSED, {
                RMSE_CHANGE_LOWER: [_change_threshold(
                    overall, settings.max_regression_vs_blessed)]})),
    }


def create_pipeline(
    *,
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    schema_path: str,
    serving_model_dir: str,
    preprocessing_fn: str,
    run_fn: str,
    split: SplitConfig,
    hparams: HParams,
    span_window: int = 0,
    serving_check_seconds: int = 180,
    drift_thresholds: dict[str, float] | None = None,
    accept_drift: bool = False,
    warm_start: bool = True,
    baseline_hparams: HParams,
    eval_settings: EvalSettings,
    beam_pipeline_args: list[str],
    metadata_connection_config=None,
    enable_cache: bool = True,
) -> tfx_pipeline.Pipeline:
    """Builds the pipeline; every path may be local or a remote (gs://, s3://) URI.

    preprocessing_fn and run_fn are dotted names of the Transform and Trainer module functions;
    hparams are the candidate's, baseline_hparams the bias baseline's every candidate must beat.
    span_window: 0 for a flat data folder, N to train on the newest N spans of one in spans.
    serving_check_seconds: the ServingCheck's time limit to load the model and answer.
    drift_thresholds: SpanDrift's limits per feature (configs.DRIFT_THRESHOLDS); accept_drift
    lets a drifted span through.
    warm_start: with spans (span_window > 0), the candidate's Trainer starts from the latest
    blessed model (TFX's base_model; models/warm_start.py); False trains from scratch. A flat
    folder always trains from scratch: the same data then gives the same model.
    """
    example_gen = MovieLensExampleGen(
        input_base=data_root, split=split, span_window=span_window,
        user_activity_edges=eval_settings.user_activity_edges,
        movie_popularity_edges=eval_settings.movie_popularity_edges).with_id(EXAMPLE_GEN_ID)
    statistics_gen = StatisticsGen(
        examples=example_gen.outputs["examples"]).with_id(STATISTICS_GEN_ID)
    schema_gen = ImportSchemaGen(schema_file=schema_path).with_id(SCHEMA_GEN_ID)
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"]).with_id(EXAMPLE_VALIDATOR_ID)
    anomalies_gate = AnomaliesGate(
        anomalies=example_validator.outputs["anomalies"]).with_id(ANOMALIES_GATE_ID)

    fingerprint = models_fingerprint()
    transform = Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=preprocessing_fn,
        # Vocabularies and statistics from the train split only: eval ids unseen in training
        # are out-of-vocabulary, as they would be in production.
        splits_config=transform_pb2.SplitsConfig(analyze=["train"], transform=["train", "eval"]),
        custom_config={CODE_FINGERPRINT_KEY: fingerprint},
        # StatisticsGen already describes the raw data; Transform's own pre- and post-transform
        # statistics would double its run time for nothing the pipeline reads.
        disable_statistics=True,
        # Only the graph: the Trainers apply it to the raw examples as they read them
        # (models/arrays.py), in TensorFlow, where Beam's pass writing every transformed rating
        # took twice the analysis' time.
        materialize=False,
    ).with_id(TRANSFORM_ID)
    # The newest span against the previous one (a flat folder has nothing to compare).
    span_drift = SpanDrift(
        examples=example_gen.outputs["examples"], data_root=data_root,
        thresholds=json.dumps(drift_thresholds or {}, sort_keys=True),
        accept_drift=int(accept_drift)).with_id(SPAN_DRIFT_ID)
    # Nothing is transformed or trained on data that failed validation or drifted.
    transform.add_upstream_node(anomalies_gate)
    transform.add_upstream_node(span_drift)

    # The model serving now: the newest candidate the gate blessed (none on the first run). Only
    # the gate's blessings count: the Evaluators' own bless a model that passed half the rules.
    # The channel names the Trainer as its producer: the Trainer may read it (a warm start)
    # without a cycle.
    blessed_model_resolver = Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=Channel(type=standard_artifacts.Model, producer_component_id=TRAINER_ID,
                      output_key="model"),
        model_blessing=Channel(type=standard_artifacts.ModelBlessing,
                               producer_component_id=BLESSING_GATE_ID, output_key="blessing"),
    ).with_id(BLESSED_MODEL_RESOLVER_ID)

    def make_trainer(hp: HParams, component_id: str, base_model: Channel | None = None
                     ) -> Trainer:
        return Trainer(
            run_fn=run_fn,
            examples=example_gen.outputs["examples"],
            base_model=base_model,
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=trainer_pb2.EvalArgs(splits=["eval"]),
            custom_config={contract.HPARAMS_KEY: hp.to_config(),
                           CODE_FINGERPRINT_KEY: fingerprint},
        ).with_id(component_id)

    trainer = make_trainer(hparams, TRAINER_ID,
                           blessed_model_resolver.outputs["model"]
                           if warm_start and span_window else None)
    # The simple baseline every candidate must beat, trained on the same split in the same run.
    baseline_trainer = make_trainer(baseline_hparams, BASELINE_TRAINER_ID)
    eval_configs = make_eval_configs(eval_settings)
    # TFMA's cost grows with the eval split: above max_eval_ratings, a seeded sample of its users.
    eval_sample = EvalSample(
        examples=example_gen.outputs["examples"], max_ratings=eval_settings.max_eval_ratings,
        seed=eval_settings.bootstrap_seed).with_id(EVAL_SAMPLE_ID)

    def make_evaluator(baseline_model: Channel, baseline: str, component_id: str) -> Evaluator:
        """The candidate against one baseline (TFMA takes one per evaluation), on the eval
        split or EvalSample's sample of it."""
        return Evaluator(examples=eval_sample.outputs["sample"], model=trainer.outputs["model"],
                         baseline_model=baseline_model, eval_config=eval_configs[baseline],
                         example_splits=["eval"]).with_id(component_id)

    evaluator = make_evaluator(baseline_trainer.outputs["model"], results.BIAS_BASELINE,
                               EVALUATOR_ID)
    blessed_evaluator = make_evaluator(blessed_model_resolver.outputs["model"],
                                       results.LATEST_BLESSED, BLESSED_MODEL_EVALUATOR_ID)
    # What users get: the candidate's `recommend` top k vs the most-rated movies and the blessed
    # model's top k, per user; TFMA's per-example metrics cannot rank a catalogue.
    topk_evaluator = topk.TopKEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        blessed_model=blessed_model_resolver.outputs["model"],
        eval_settings=topk.settings_json(eval_settings),
    ).with_id(TOPK_EVALUATOR_ID)
    gate = BlessingGate(
        model=trainer.outputs["model"],
        baseline_evaluation=evaluator.outputs["evaluation"],
        baseline_blessing=evaluator.outputs["blessing"],
        blessed_evaluation=blessed_evaluator.outputs["evaluation"],
        blessed_blessing=blessed_evaluator.outputs["blessing"],
        topk_evaluation=topk_evaluator.outputs["evaluation"],
        topk_blessing=topk_evaluator.outputs["blessing"],
    ).with_id(BLESSING_GATE_ID)

    # Infra validation: the blessed model, copied to a staging folder, must load in a model
    # server of its own process and answer on every signature before it is pushed.
    # TFX's InfraValidator would start TF Serving itself, but only under Docker or Kubernetes,
    # and TFX 1.16's KubeflowV2DagRunner refuses to compile it (NotImplementedError in its
    # step builder): on Kubeflow too this runs, inside the pipeline image.
    serving_check = ServingCheck(
        model=trainer.outputs["model"], model_blessing=gate.outputs["blessing"],
        timeout_seconds=serving_check_seconds).with_id(SERVING_CHECK_ID)

    # A version folder appears in serving_model_dir complete or not at all: TF Serving polls it.
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=gate.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=serving_model_dir)),
    ).with_id(PUSHER_ID)

    # Why the model was or was not blessed, per slice; after the Pusher to say where it went.
    report = EvaluationReportGen(
        baseline_evaluation=evaluator.outputs["evaluation"],
        blessed_evaluation=blessed_evaluator.outputs["evaluation"],
        topk_evaluation=topk_evaluator.outputs["evaluation"],
        blessing=gate.outputs["blessing"],
        pushed_model=pusher.outputs["pushed_model"],
        eval_sample=eval_sample.outputs["sample"],
        eval_settings=json.dumps(dataclasses.asdict(eval_settings), sort_keys=True),
    ).with_id(REPORT_GEN_ID)

    return tfx_pipeline.Pipeline(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        components=[example_gen, statistics_gen, schema_gen, example_validator, anomalies_gate,
                    span_drift, transform, trainer, baseline_trainer, blessed_model_resolver,
                    eval_sample, evaluator, blessed_evaluator, topk_evaluator, gate,
                    serving_check, pusher, report],
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=beam_pipeline_args,
    )
