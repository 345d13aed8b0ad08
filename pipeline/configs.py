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
PIPELINE_ROOT = OUTPUT_DIR / PIPELINE_NAME
METADATA_PATH = OUTPUT_DIR / "metadata.sqlite"
SERVING_MODEL_DIR = REPO_ROOT / "serving_model" / MODEL_NAME
SCHEMA_PATH = REPO_ROOT / "schema" / "schema.pbtxt"

# Module functions, by dotted name: they are imported from the installed project
# (`pip install -e .` locally, the pipeline image on Kubeflow).
PREPROCESSING_FN = "models.preprocessing.preprocessing_fn"
RUN_FN = "models.trainer.run_fn"

SPLIT = SplitConfig(method="time", eval_fraction=0.2, seed=42)
HPARAMS = HParams()


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """Blessing rules for the Evaluator: the candidate is pushed only when all hold."""

    # Overall RMSE (stars) must be below this; predicting the global mean scores 1.079 on the
    # ml-latest-small time split.
    rmse_upper_bound: float = 1.05


EVAL = EvalSettings()

# Beam on this machine. in_memory was measured faster than multi_processing for ml-latest-small
# (each worker process re-imports TensorFlow); see README, "Performance".
BEAM_PIPELINE_ARGS = [
    "--runner=DirectRunner",
    "--direct_running_mode=in_memory",
    "--direct_num_workers=1",
]
