"""Failure modes of `python -m pipeline.local_runner` and `make run`: the exit codes, and one
short paragraph without a traceback for an expected failure (README: Failure modes).

The subprocess tests stop before or at the ExampleGen: seconds, no training.
"""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from movielens_fixture import write_movielens_fixture

from components.anomalies_gate import DataAnomaliesError
from components.movielens_example_gen.parsing import InputDataError, MissingInputError
from models import progress, trainer
from pipeline import fetch_data, local_runner

ROOT = Path(__file__).resolve().parent.parent


def run_runner(*args, cwd=ROOT):
    # Without TF_USE_LEGACY_KERAS: the runner selects Keras 2 itself (models/__init__.py).
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return subprocess.run([sys.executable, "-m", "pipeline.local_runner", "--offline", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("error", [
    DataAnomaliesError("ExampleValidator found anomalies ..."),
    InputDataError("10 of 35 rows of ratings.csv could not be used"),
    MissingInputError("ratings.csv not found"),
    fetch_data.DataError("/nowhere is not a MovieLens 'latest'-format folder"),
    OSError(errno.ENOSPC, "No space left on device", "/out/x"),
    PermissionError(errno.EACCES, "Permission denied", "/out"),
    OSError(errno.EROFS, "Read-only file system", "/out"),
    tf.errors.PermissionDeniedError(None, None, "/data/ratings.csv; Permission denied"),
])
def test_expected_failures_get_a_paragraph(error):
    message = local_runner.expected_failure(error)
    assert message and "Traceback" not in message


@pytest.mark.parametrize("error", [
    ValueError("a bug"), KeyError("x"), OSError(errno.EIO, "I/O error"),
    FileNotFoundError(errno.ENOENT, "No such file", "/internal/file"),
])
def test_unexpected_errors_keep_their_traceback(error):
    assert local_runner.expected_failure(error) is None


def test_check_writable_refuses_a_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError) as e:
        local_runner.check_writable(tmp_path / "file" / "out", "--output-dir")
    assert "--output-dir" in local_runner.expected_failure(e.value)
    local_runner.check_writable(tmp_path / "new" / "deeper", "--output-dir")  # creatable: fine


def test_a_wrong_data_dir_exits_1_without_a_traceback(tmp_path):
    result = run_runner("--data-dir", str(tmp_path / "nowhere"),
                        "--output-dir", str(tmp_path / "out"))
    assert result.returncode == local_runner.EXIT_ERROR
    assert "Traceback" not in result.stderr + result.stdout
    assert f"error: {tmp_path / 'nowhere'}" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_dir_that_cannot_be_written_exits_1_before_the_run(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5))
    (tmp_path / "file").write_text("")
    result = run_runner("--data-dir", str(data_dir), "--output-dir", str(tmp_path / "file" / "o"))
    assert result.returncode == local_runner.EXIT_ERROR
    assert "Traceback" not in result.stderr + result.stdout
    assert "--output-dir" in result.stderr and str(tmp_path / "file") in result.stderr


def test_too_many_bad_rows_exit_1_with_the_lines_and_no_traceback(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5),
                                       extra_rating_rows=["x,y,z,w"] * 10)
    result = run_runner("--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"),
                        "--serving-model-dir", str(tmp_path / "serving"))
    assert result.returncode == local_runner.EXIT_ERROR, result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout
    assert (f"error: 10 of 35 rows of {data_dir / 'ratings.csv'} could not be used "
            "(limit: 1.0%): lines 27, 28, 29, 30, 31 and 5 more.") in result.stderr
    assert "rejected_rows.txt" in result.stderr
    # A quiet console: the ExampleGen's line, none of TensorFlow's CUDA-factory registration
    # errors (no GPU here) nor TFX's resolver warnings.
    assert "Unable to register" not in result.stderr
    assert "property_predicate" not in result.stderr
    assert "Component MovieLensExampleGen is running" not in result.stderr


class _Captured(logging.Handler):
    """The records a call logs on models/progress.py's logger."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def reported(call) -> logging.LogRecord:
    """The one record `call()` logs through models/progress.py, as the Trainer logs it."""
    captured, level = _Captured(), progress.LOGGER.level
    progress.LOGGER.addHandler(captured)
    progress.LOGGER.setLevel(logging.INFO)  # as the runner's logging configuration has it
    try:
        call()
    finally:
        progress.LOGGER.removeHandler(captured)
        progress.LOGGER.setLevel(level)
    (record,) = captured.records
    return record


def epoch(n: int, rmse: float):
    """The rating model's epoch callback through epoch n of 40: its training, then its
    validation pass, then its end."""
    callback = trainer.EpochProgress()
    callback.set_params({"epochs": 40})

    def run():
        callback.on_epoch_begin(n - 1)
        callback.on_test_begin()
        callback.on_epoch_end(n - 1, {"rmse": 0.8, "val_rmse": rmse})
    return run


def test_the_console_shows_components_with_their_time_progress_and_warnings():
    now = [0.0]
    console = local_runner._Console(clock=lambda: now[0])
    info, warning = logging.INFO, logging.WARNING
    shown = []
    for seconds, name, level, message in [
        (0, "root", info, "Running pipeline movielens-tfx on /data; artifacts in /out"),
        (0, "absl", info, "Component Transform is running."),
        (1, "absl", info, "Going to run a new execution 7"),
        (1, "absl", warning, "ArtifactQuery.property_predicate is not supported."),
        (4, "absl", info, "Component Transform is finished."),
        (4, "absl", info, "Component Trainer is running."),
        (4, "models.trainer", info, "Hyper-parameters: HParams(...)"),
        (5, "absl", info, "Epoch 1/40"),  # Keras' own lines: --verbose only
        (5, "absl", info, "3/3 - 0s - rmse: 0.9 - val_rmse: 0.9511 - lr: 0.003"),
        (5, None, None, epoch(1, 0.9511)),  # too soon after the step's start
        (16, None, None, epoch(2, 0.9377)),
        (17, None, None, lambda: progress.report("retrieval epoch 3: validation NDCG@10 0.3800",
                                                 "accuracy ..")),
        (27, None, None, lambda: progress.report("retrieval epoch 4: validation NDCG@10 0.3900",
                                                 "accuracy ..")),
        (37, None, None, lambda: progress.report(
            "retrieval refit on all interactions, epoch 1/4", "loss 7.1234")),
        (39, None, None, lambda: progress.report(
            "retrieval refit on all interactions, epoch 2/4", "loss 6.9")),  # too soon
        (39, None, None, lambda: progress.report(
            "item-item stage fitted on 900 interactions, 90 of 90 movies solved, in 1.2 s "
            "(0.1 MB served)", throttle=False)),
        (40, "models.trainer", warning, "Something to act on"),
        (40, "models.warmup", info, "Wrote 8 warmup requests to ..."),
        (41, "components.evaluation.topk", info, "Top-10 NDCG over 100 users: ..."),
        (41, "absl", info, "A cached execution 8 is used."),
        (42, "absl", info, "Component Trainer is finished."),
    ]:
        now[0] = seconds
        record = (reported(message) if name is None
                  else logging.LogRecord(name, level, __file__, 1, message, (), None))
        if console.filter(record):
            shown.append(record.getMessage())
    assert shown == ["Running pipeline movielens-tfx on /data; artifacts in /out",
                     "Transform                       4 s",
                     "  Trainer epoch 2/40: validation RMSE 0.9377 stars (0.0 s)",
                     "  Trainer retrieval epoch 4: validation NDCG@10 0.3900",
                     "  Trainer retrieval refit on all interactions, epoch 1/4",
                     "  Trainer item-item stage fitted on 900 interactions, 90 of 90 movies "
                     "solved, in 1.2 s (0.1 MB served)",
                     "Something to act on",
                     "Top-10 NDCG over 100 users: ...",
                     "Trainer                        38 s (cached)"]
    # With --verbose (no console) the line says more: the retrieval epoch's accuracies.
    assert reported(lambda: progress.report("retrieval epoch 5: NDCG", "accuracy top-1 0.1")
                    ).getMessage() == "retrieval epoch 5: NDCG; accuracy top-1 0.1"


def test_make_run_fails_with_make_s_code_and_the_runner_s_paragraph(tmp_path):
    """make maps every failing recipe to its own exit code 2; its 'Error N' line carries the
    runner's code, and `.venv/bin/python -m pipeline.local_runner` returns it as is."""
    stamp = ROOT / ".venv" / ".installed"
    if not stamp.exists() or any(stamp.stat().st_mtime < (ROOT / f).stat().st_mtime
                                 for f in ("requirements.txt", "pyproject.toml")):
        pytest.skip("make run would (re)create .venv first: run `make venv`")
    result = subprocess.run(
        ["make", "--no-print-directory", "run", f"DATA_DIR={tmp_path / 'nowhere'}",
         f"RUN_ARGS=--offline --output-dir {tmp_path / 'out'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert f"error: {tmp_path / 'nowhere'}" in result.stderr
    assert "Error 1" in result.stderr


@pytest.mark.parametrize("how", ["wrapped by Beam", "dropped"])
def test_ctrl_c_inside_a_step_ends_the_run_as_interrupted(tmp_path, monkeypatch, capsys, how):
    """Beam re-raises a step's KeyboardInterrupt as a RuntimeError naming it, and one raised while
    Python runs a finalizer is lost: both still exit 130 with the one line, and the record says
    interrupted."""
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5))

    def run_pipeline(arguments, metadata_path, verbose):
        local_runner._CTRL_C.set()  # as the handler does on Ctrl-C
        if how == "dropped":
            return None
        raise RuntimeError("KeyboardInterrupt [while running 'Analyze/CreateSavedModel']")

    monkeypatch.setattr(local_runner, "run_pipeline", run_pipeline)
    handler = signal.getsignal(signal.SIGINT)
    try:
        code = local_runner.main(["--offline", "--data-dir", str(data_dir), "--output-dir",
                                  str(tmp_path / "out"), "--serving-model-dir",
                                  str(tmp_path / "serving")])
    finally:
        signal.signal(signal.SIGINT, handler)
        local_runner._CTRL_C.clear()
    assert code == local_runner.EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == local_runner.INTERRUPTED_MESSAGE
    assert "Traceback" not in err
    (record,) = [json.loads(p.read_text())
                 for p in (tmp_path / "out" / "movielens-tfx" / "runs").glob("*.json")]
    assert record["status"] == "interrupted" and record["exit_code"] == 130
