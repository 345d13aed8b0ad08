"""Test set-up: Keras 2 for TensorFlow Recommenders, quiet TensorFlow, shared fixtures."""

import os
import re
import sys
from pathlib import Path

# Both before anything imports TensorFlow: `models` selects Keras 2 (see models/__init__.py).
import models  # noqa: F401

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from movielens_fixture import write_movielens_fixture  # noqa: E402
from pipelines import local_pipeline, serving_model_dir  # noqa: E402

# The process that imported this file. mutmut's fork server imports it (collecting the tests,
# TensorFlow included) once, then forks a process per mutant that runs pytest again in-process.
_IMPORT_PID = os.getpid()


def pytest_configure(config: pytest.Config) -> None:
    """In a process forked after TensorFlow was imported, a fresh eager context before any op.

    A forked child inherits TensorFlow's context with thread pools whose threads did not survive
    the fork: its first op (tf.data, a SavedModel's function) waits on them forever. The new
    context starts its own pools on first use.
    """
    _register_markers(config)
    if os.getpid() != _IMPORT_PID and "tensorflow" in sys.modules:
        from tensorflow.python.eager import context

        context._reset_context()


def _register_markers(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mutation_last: runs after the other selected tests when mutmut runs a "
        "mutant (a slow test: mutmut's -x stops at the first failure, usually before it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # mutmut passes a mutant's tests in no particular order; slow ones last keeps killed
    # mutants fast. MUTANT_UNDER_TEST is set in mutmut's test processes only.
    if os.environ.get("MUTANT_UNDER_TEST"):
        items.sort(key=lambda item: item.get_closest_marker("mutation_last") is not None)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """make test's worker processes (pytest-xdist, `--dist loadscope`): a module's tests run in
    one worker, so its module fixtures (a trained model, a server) are built once, and every
    module that takes the session's pipeline run (`pushed_model`) runs in the same worker, so
    that run happens once. Modules that run pipelines start first: one started last keeps a
    worker busy alone at the end. (xdist's own xdist_group marks do nothing under pytest 9:
    xdist renames the node ids through an attribute pytest 9 no longer reads.)"""
    if config.getoption("dist", "no") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    root = Path(config.rootpath)
    texts = {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
             for path in (root / "tests").glob("test_*.py")}
    shared = {module for module, text in texts.items() if _TAKES_PUSHED_MODEL.search(text)}
    heavy = {"pushed_model"} | {module for module, text in texts.items() if "mark.e2e" in text}

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "pushed_model" if module in shared else module

        def _assign_work_unit(self, node) -> None:
            # The queue is in xdist's order (most tests first); the heavy scopes move ahead.
            for scope in sorted(self.workqueue, key=lambda scope: scope not in heavy):
                self.workqueue.move_to_end(scope)
            super()._assign_work_unit(node)

    return ModuleScheduling(config, log)


# A test or fixture of the module takes the session's pipeline run (the scheduler runs in
# xdist's controller, which collects nothing).
_TAKES_PUSHED_MODEL = re.compile(r"def \w+\([^)]*\bpushed_model\b")


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
