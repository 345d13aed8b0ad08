"""Test set-up: Keras 2 for TensorFlow Recommenders, quiet TensorFlow, shared fixtures."""

import os

# Must happen before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from movielens_fixture import write_movielens_fixture  # noqa: E402


@pytest.fixture
def movielens_dir(tmp_path):
    """A small generated MovieLens-format folder (CRLF, quoted UTF-8 titles)."""
    return write_movielens_fixture(tmp_path / "movielens")
