"""The pipeline through Beam's portable runner and an external SDK worker pool (marked slow).

The path Flink, Spark and Dataflow take: the runner's process only submits each Beam pipeline;
SDK workers in other processes, started by the worker pool, unpickle the DoFns, the
preprocessing_fn and TFMA's extractors and import this project from the installed package. Code
that only works inside one process (state set outside the pipeline, a file only the submitting
process can see, an import path that is only right in the repository) fails here and not with
the DirectRunner in memory.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from movielens_fixture import write_movielens_fixture

from models import contract
from pipeline import run_summary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def worker_pool(tmp_path):
    """A Beam worker pool on a free port: (address, its log). Started outside the repository,
    with this environment's bin/ first on PATH, since the pool starts each SDK worker as
    `python -c ...`: the workers find the project through its installation only."""
    port = free_port()
    log_path = tmp_path / "worker_pool.log"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("PYTHONPATH", None)
    cwd = tmp_path / "pool"
    cwd.mkdir()
    with open(log_path, "w") as log:
        # Its own session: the pool and the workers it forks are stopped together below.
        pool = subprocess.Popen(
            [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
             f"--service_port={port}"], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("localhost", port), timeout=1).close()
                break
            except OSError:
                assert pool.poll() is None, log_path.read_text()
                assert time.time() < deadline, "the worker pool did not start in 60 s"
                time.sleep(0.5)
        yield f"localhost:{port}", log_path
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        try:
            pool.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pool.pid, signal.SIGKILL)
            pool.wait()


def test_the_pipeline_runs_and_pushes_through_the_portable_runner(tmp_path, worker_pool):
    address, pool_log = worker_pool
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=100, ratings_per_user=(25, 50))
    output_dir, serving_dir = tmp_path / "tfx", tmp_path / "serving" / contract.MODEL_NAME
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.local_runner", "--offline", "--data-dir", str(data_dir),
         "--output-dir", str(output_dir), "--serving-model-dir", str(serving_dir),
         "--beam", "portable", "--worker-pool", address],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    print(f"portable pipeline run: {time.time() - start:.0f} s")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    summary = run_summary.summarize_latest_run(str(output_dir / "metadata.sqlite"))
    assert set(state for state, _ in summary.components.values()) == {"COMPLETE"}
    versions = [p for p in serving_dir.iterdir() if p.name.isdigit()]
    assert len(versions) == 1 and (versions[0] / "saved_model.pb").is_file()
    assert summary.pushed_to == str(versions[0])
    # The Beam work went to the pool's SDK worker processes, not into the runner's own.
    assert "Starting worker with command" in pool_log.read_text()
