"""Pipeline configuration: names, paths and parameters in one place.

Every runner (local, Kubeflow) and the tests build the pipeline from these values; command-line
flags of the runners override a few of them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from components.movielens_example_gen.config import SplitConfig
from models.hparams import HParams

REPO_ROOT = Path(__file__).resolve().parents[1]

PIPELINE_NAME = "movielens-tfx"
# The name TensorFlow Serving serves the model under (models.config, clients, REST URLs).
MODEL_NAME = "movielens"

# Data: the default dataset, where it is downloaded, and local copies tried before the network.
DATASET = "ml-latest-small"
DATA_URL_TEMPLATE = "https://files.grouplens.org/datasets/movielens/{dataset}.zip"
DATA_HOME = REPO_ROOT / "data"
LOCAL_DATA_MIRRORS = [Path(p) for p in os.environ.get("MOVIELENS_MIRROR", "").split(":") if p] + [
    REPO_ROOT.parent / "shared" / "movielens",
]

# Outputs: artifacts and ML Metadata under tfx_output/, pushed models under serving_model/.
OUTPUT_DIR = REPO_ROOT / "tfx_output"
SERVING_MODEL_DIR = REPO_ROOT / "serving_model" / MODEL_NAME
SCHEMA_PATH = REPO_ROOT / "schema" / "schema.pbtxt"

# Module functions, by dotted name: they are imported from the installed project
# (`pip install -e .` locally, the pipeline image on Kubeflow).
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"

SPLIT = SplitConfig(method="time", eval_fraction=0.2, seed=42)

# Tuned hyper-parameters per model type (bench/accuracy.py, docs/benchmarks.md). The pipeline trains
# MODEL_TYPE; `make run RUN_ARGS="--model neural"` or custom_config overrides pick another.
MODEL_HPARAMS = {
    "bias": HParams(model_type="bias"),
    "mf": HParams(model_type="mf"),
    "neural": HParams(model_type="neural"),
}
MODEL_TYPE = "mf"


def model_hparams(model_type: str) -> HParams:
    """The tuned defaults of a model type."""
    if model_type not in MODEL_HPARAMS:
        raise ValueError(f"unknown model type {model_type!r}; known: {sorted(MODEL_HPARAMS)}")
    return MODEL_HPARAMS[model_type]


HPARAMS = model_hparams(MODEL_TYPE)


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Blessing rules for the Evaluator: the candidate is pushed only when all hold."""

    # Overall RMSE (stars) must be below this; predicting the global mean scores 1.079 on the
    # ml-latest-small time split.
    rmse_upper_bound: float = 1.05


EVAL = EvalSettings()


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Where the model is served: TF Serving's standard ports and in-container paths, shared by
    the container files in serving/ (the tests check they agree), the development server, the
    clients and the benchmark."""

    grpc_port: int = 8500
    rest_port: int = 8501
    # The development server binds loopback only unless told otherwise (--host 0.0.0.0).
    host: str = "127.0.0.1"
    # Inside the TF Serving container: the model base path (the Pusher's serving_model/movielens
    # is mounted here) and the folder holding models.config, batching and monitoring files.
    container_model_base_path: str = f"/models/{MODEL_NAME}"
    container_config_dir: str = "/config"
    # TF Serving's Prometheus endpoint on the REST port (monitoring.config).
    prometheus_path: str = "/monitoring/prometheus/metrics"
    # How often a new version is looked for (TF Serving's --file_system_poll_wait_seconds).
    poll_seconds: float = 1.0


SERVING = ServingSettings()

# Beam on this machine. in_memory was measured faster than multi_processing for ml-latest-small
# (each worker process re-imports TensorFlow); see docs/benchmarks.md.
BEAM_PIPELINE_ARGS = [
    "--runner=DirectRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
]


@dataclasses.dataclass(frozen=True)
class KubeflowSettings:
    """Where the pipeline runs on Kubeflow Pipelines (`python -m pipeline.kubeflow_runner`).

    Every path must be reachable from the cluster's pods: an object store (gs://; s3:// with
    tensorflow-io) or a volume mounted at the same path in every pod. Override with environment
    variables or the runner's flags.
    """

    pipeline_root: str = (os.environ.get("KFP_PIPELINE_ROOT")
                          or f"gs://YOUR_BUCKET/tfx_output/{PIPELINE_NAME}")
    data_root: str = os.environ.get("KFP_DATA_ROOT") or f"gs://YOUR_BUCKET/movielens/{DATASET}"
    # TF Serving loads from here (serving/ mounts or syncs this path).
    serving_model_dir: str = (os.environ.get("KFP_SERVING_MODEL_DIR")
                              or f"gs://YOUR_BUCKET/serving_model/{MODEL_NAME}")
    # Built from kubeflow/Dockerfile: TFX 1.16 image + this project installed.
    image: str = os.environ.get("KFP_IMAGE") or "ghcr.io/YOUR_ORG/movielens-tfx:0.1.0"
    # Where kubeflow/Dockerfile puts the curated schema inside the image.
    schema_path: str = "/pipeline/schema/schema.pbtxt"
    # GPUs for the Trainer's pod (nvidia.com/gpu); 0 trains on CPU.
    trainer_gpus: int = int(os.environ.get("KFP_TRAINER_GPUS") or "0")
    # In-pod Beam by default; for data-heavy runs use Dataflow or a portable Flink/Spark runner:
    #   ("--runner=DataflowRunner", "--project=P", "--region=R", "--temp_location=gs://B/tmp",
    #    "--sdk_container_image=<the pipeline image>")
    #   ("--runner=PortableRunner", "--job_endpoint=flink-jobserver:8099",
    #    "--environment_type=EXTERNAL", "--environment_config=localhost:50000")
    beam_pipeline_args: tuple[str, ...] = (
        "--runner=DirectRunner",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",  # one worker per core of the pod
    )


KUBEFLOW = KubeflowSettings()
