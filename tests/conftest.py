"""Test set-up: Keras 2 for TensorFlow Recommenders, quiet TensorFlow, shared fixtures."""

import os

# Both before anything imports TensorFlow: `models` selects Keras 2 (see models/__init__.py).
import models  # noqa: F401

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from movielens_fixture import write_movielens_fixture  # noqa: E402
from pipelines import local_pipeline, serving_model_dir  # noqa: E402


@pytest.fixture
def movielens_dir(tmp_path):
    """A small generated MovieLens-format folder (CRLF, quoted UTF-8 titles)."""
    return write_movielens_fixture(tmp_path / "movielens")


@pytest.fixture(scope="session")
def pushed_model(tmp_path_factory):
    """One real pipeline run (LocalDagRunner) on a generated fixture, shared by every test that
    needs a pushed model: (serving model base path, MovieLens data folder, pipeline root)."""
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    root = tmp_path_factory.mktemp("pushed")
    data_dir = write_movielens_fixture(root / "data", n_users=100, ratings_per_user=(25, 50))
    base_path = serving_model_dir(root)
    LocalDagRunner().run(local_pipeline(data_dir, root))
    versions = [p for p in base_path.iterdir() if p.name.isdigit()]
    assert len(versions) == 1, f"expected one pushed version under {base_path}: {versions}"
    return base_path, data_dir, root / "pipeline"
