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

    return create_pipeline(**configs.pipeline_arguments(
        pipeline_root=str(root / "pipeline"),
        data_root=str(data_dir),
        serving_model_dir=str(serving_model_dir(root)),
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")),
        **overrides))
