"""The pipeline as the local runner builds it (pipeline/configs.py's values), under one folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models import contract
from pipeline import configs


def serving_model_dir(root: Path) -> Path:
    """Where `local_pipeline(data_dir, root)` pushes models."""
    return root / "serving_model" / contract.MODEL_NAME


def local_pipeline(data_dir: Path, root: Path, **overrides: Any):
    """create_pipeline with the configs' values, artifacts in root/pipeline, ML Metadata in
    root/metadata.sqlite, models pushed to serving_model_dir(root); keyword overrides replace
    any argument."""
    # Imported here: TFX takes seconds to import, and only the tests that run a pipeline need it.
    from tfx.orchestration import metadata

    from pipeline.pipeline import create_pipeline

    arguments = dict(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=str(root / "pipeline"),
        data_root=str(data_dir),
        schema_path=str(configs.SCHEMA_PATH),
        serving_model_dir=str(serving_model_dir(root)),
        preprocessing_fn=configs.PREPROCESSING_FN,
        run_fn=configs.RUN_FN,
        split=configs.SPLIT,
        hparams=configs.HPARAMS,
        baseline_hparams=configs.BASELINE_HPARAMS,
        eval_settings=configs.EVAL,
        beam_pipeline_args=configs.BEAM_PIPELINE_ARGS,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")),
    )
    return create_pipeline(**(arguments | overrides))
