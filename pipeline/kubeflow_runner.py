"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) with TFX's KubeflowV2DagRunner.

    python -m pipeline.kubeflow_runner                       # settings from configs.KUBEFLOW
    python -m pipeline.kubeflow_runner --pipeline-root gs://bucket/tfx --image REGISTRY/IMAGE:TAG

Writes kubeflow/pipeline.json, the KFP v2 pipeline spec to upload to a KFP cluster, and
kubeflow/pipeline_job.json, the same spec wrapped as a PipelineJob with its runtime parameters
(the format Vertex AI Pipelines takes). The pipeline is the one `create_pipeline` builds for the
local runner; only locations, the image and the Beam arguments differ.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from kfp.pipeline_spec import pipeline_spec_pb2  # noqa: E402
from tfx.orchestration import data_types  # noqa: E402
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner  # noqa: E402
from tfx.orchestration.pipeline import Pipeline  # noqa: E402

from pipeline import configs  # noqa: E402
from pipeline.pipeline import TRAINER_ID, create_pipeline  # noqa: E402

ResourceSpec = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec
PIPELINE_SPEC_FILE = "pipeline.json"
PIPELINE_JOB_FILE = "pipeline_job.json"
# Runtime parameters: chosen per run in the KFP UI or by `kubeflow/submit.py --data-root`.
DATA_ROOT_PARAMETER = "data_root"


def build_pipeline(settings: configs.KubeflowSettings) -> Pipeline:
    """The local pipeline with the cluster's locations, image paths and Beam arguments."""
    pipeline = create_pipeline(**configs.pipeline_arguments(
        pipeline_root=settings.pipeline_root,
        data_root=data_types.RuntimeParameter(
            name=DATA_ROOT_PARAMETER, ptype=str, default=settings.data_root),
        schema_path=settings.schema_path,
        serving_model_dir=settings.serving_model_dir,
        span_window=settings.span_window,
        beam_pipeline_args=list(settings.beam_pipeline_args),
    ))
    if settings.trainer_gpus:
        trainer = next(c for c in pipeline.components if c.id == TRAINER_ID)
        trainer.with_platform_config(ResourceSpec(accelerator=ResourceSpec.AcceleratorConfig(
            type="nvidia.com/gpu", count=settings.trainer_gpus)))
    return pipeline


def compile_pipeline(settings: configs.KubeflowSettings, output_dir: Path) -> Path:
    """Writes pipeline_job.json and pipeline.json into output_dir; returns the spec's path."""
    output_dir.mkdir(parents=True, exist_ok=True)
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=settings.image, display_name=configs.PIPELINE_NAME,
            # Schema 2.1, as the KFP v2 SDK writes it: runtime parameters keep their defaults.
            use_pipeline_spec_2_1=True),
        output_dir=str(output_dir), output_filename=PIPELINE_JOB_FILE)
    job_path = output_dir / PIPELINE_JOB_FILE
    job_path.unlink(missing_ok=True)  # the runner refuses to overwrite
    runner.run(build_pipeline(settings),
               parameter_values={DATA_ROOT_PARAMETER: settings.data_root})
    job = json.loads(job_path.read_text())
    spec = job["pipelineSpec"]
    # TFX 1.16 leaves the runtime parameters' defaults out of the spec (only the PipelineJob has
    # them); KFP needs them there to pre-fill and default each run's parameters.
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    for name, value in job["runtimeConfig"]["parameterValues"].items():
        inputs[name].update(defaultValue=value, isOptional=True)
    spec_path = output_dir / PIPELINE_SPEC_FILE
    spec_path.write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
    return spec_path


def main(argv: list[str] | None = None) -> int:
    defaults = configs.KUBEFLOW
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline-root", default=defaults.pipeline_root)
    parser.add_argument("--data-root", default=defaults.data_root,
                        help="default of the data_root runtime parameter")
    parser.add_argument("--serving-model-dir", default=defaults.serving_model_dir)
    parser.add_argument("--image", default=defaults.image, help="the pipeline image")
    parser.add_argument("--trainer-gpus", type=int, default=defaults.trainer_gpus)
    parser.add_argument("--span-window", type=int, default=defaults.span_window,
                        help="0: a flat data root; N: data root in spans, train on the newest N "
                             "and warm-start from the serving model")
    parser.add_argument("--beam-pipeline-args", default=shlex.join(defaults.beam_pipeline_args),
                        help="one quoted string, e.g. '--runner=DataflowRunner --project=P "
                             "--region=R --temp_location=gs://B/tmp'")
    parser.add_argument("--output-dir", type=Path, default=configs.REPO_ROOT / "kubeflow")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = dataclasses.replace(
        defaults, pipeline_root=args.pipeline_root, data_root=args.data_root,
        serving_model_dir=args.serving_model_dir, image=args.image,
        trainer_gpus=args.trainer_gpus, span_window=args.span_window,
        beam_pipeline_args=tuple(shlex.split(args.beam_pipeline_args)))
    spec = compile_pipeline(settings, args.output_dir)
    print(f"KFP v2 pipeline spec: {spec}")
    print(f"Vertex AI PipelineJob: {args.output_dir / PIPELINE_JOB_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
