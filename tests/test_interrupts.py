"""Interrupted and concurrent runs of `python -m pipeline.local_runner` (README: Failure modes):
Ctrl-C prints one line and exits 130, a killed run leaves no lock, a second run on the same
output folder is refused with exit 3 naming the lock file and its holder's PID, and a rerun
after SIGINT and SIGKILL completes, reusing the steps that finished."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from movielens_fixture import write_movielens_fixture

from pipeline import configs, local_runner, run_lock, run_record, run_summary, stale_executions

ROOT = Path(__file__).resolve().parent.parent
# Keras 2 and TensorFlow's log level are the runner's own choice (models/__init__.py, the runner).
ENV = dict(os.environ, PYTHONUNBUFFERED="1")

# Holds an output folder's run lock until killed, as a run would.
HOLD_LOCK = """
import sys, time
from pathlib import Path
from pipeline import run_lock
with run_lock.hold(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(600)
"""


def hold_lock_in_a_subprocess(output_dir: Path) -> subprocess.Popen:
    output_dir.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(output_dir)], cwd=ROOT,
                              env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def _sigint_as_in_a_terminal() -> None:
    """A background job (`nohup`, `cmd &` in a script: how CI may run the tests) inherits
    SIGINT ignored, and the runner rightly leaves it so; the runner under test gets SIGINT's
    default, as a run started from a terminal has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Runner:
    """`python -m pipeline.local_runner` in a subprocess; `signal_when` sends a signal once a
    component has been running for `delay` seconds.

    A component has started when TFX makes its execution's folder (`<pipeline root>/<component>/
    .system/executor_execution/<id>/`): cached components make none, and the console does not
    print a line when a component starts."""

    def __init__(self, data_dir: Path, output_dir: Path, serving_model_dir: Path):
        self.pipeline_root = output_dir / configs.PIPELINE_NAME
        self.known = set(self._executions("*"))  # those of earlier runs
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.local_runner", "--offline", "--data-dir",
             str(data_dir), "--output-dir", str(output_dir), "--serving-model-dir",
             str(serving_model_dir)],
            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_sigint_as_in_a_terminal)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def _executions(self, component: str) -> list[Path]:
        return list(self.pipeline_root.glob(f"{component}/.system/executor_execution/*"))

    def wait_for(self, component: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not set(self._executions(component)) - self.known:
            assert self.process.poll() is None and time.monotonic() < deadline, (
                f"{component} never started:\n{self.output[-3000:]}")
            time.sleep(0.1)

    def signal_when(self, component: str, sig: int, delay: float = 0.0) -> None:
        self.wait_for(component)
        time.sleep(delay)
        self.process.send_signal(sig)

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout)
        self.reader.join(timeout=30)
        return code

    @property
    def output(self) -> str:
        return "".join(self.lines)


def records(output_dir: Path) -> list[dict]:
    """The run records under output_dir, oldest first."""
    folder = output_dir / "movielens-tfx" / run_record.RUNS_DIR
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def test_the_lock_refuses_a_second_holder_and_dies_with_a_killed_one(tmp_path):
    holder = hold_lock_in_a_subprocess(tmp_path)
    try:
        with pytest.raises(run_lock.RunLockedError) as e, run_lock.hold(tmp_path):
            pass
        assert e.value.pid == holder.pid
        assert e.value.lock_path == tmp_path / run_lock.LOCK_FILE
        assert f"PID {holder.pid}" in str(e.value) and str(tmp_path / "run.lock") in str(e.value)
    finally:
        holder.kill()
        holder.wait()
    # SIGKILL leaves the file, not the lock: the next run takes it at once and writes its PID.
    with run_lock.hold(tmp_path) as lock_path:
        assert lock_path.read_text() == f"{os.getpid()}\n"


def test_the_lock_error_names_the_holder_or_says_its_pid_is_not_written_yet():
    lock = Path("/data/out/run.lock")
    tail = ("is using /data/out: it holds /data/out/run.lock. Wait for it to finish, or pass "
            "another --output-dir. Two runs on one output folder would write the same ML "
            "Metadata store.")
    assert str(run_lock.RunLockedError(lock, 4242)) == f"another run (PID 4242) {tail}"
    assert str(run_lock.RunLockedError(lock, None)) == (
        f"another run (a process whose PID is not yet written) {tail}")


@pytest.mark.parametrize("content, pid", [
    (b"4242\n", 4242),
    (b"", None),  # the holder took the lock and has not written its PID yet
    (b"\xff\xfe garbage", None),  # not ASCII: no PID, and no error
])
def test_the_holders_pid_is_read_from_the_lock_file(tmp_path, content, pid):
    path = tmp_path / run_lock.LOCK_FILE
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert run_lock._holder(fd) == pid
    finally:
        os.close(fd)


def test_a_second_run_on_the_same_output_folder_exits_3_naming_the_lock_and_pid(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5))
    output_dir = tmp_path / "out"
    holder = hold_lock_in_a_subprocess(output_dir)
    try:
        runner = Runner(data_dir, output_dir, tmp_path / "serving")
        assert runner.finish() == local_runner.EXIT_LOCKED == 3
    finally:
        holder.kill()
        holder.wait()
    assert "Traceback" not in runner.output
    assert (f"error: another run (PID {holder.pid}) is using {output_dir}: it holds "
            f"{output_dir / 'run.lock'}.") in runner.output
    # Refused before touching anything: no ML Metadata store, no run record.
    assert sorted(p.name for p in output_dir.iterdir()) == ["run.lock"]


@pytest.mark.e2e
def test_ctrl_c_prints_one_line_exits_130_and_records_the_interruption(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=20, ratings_per_user=(10, 20))
    output_dir = tmp_path / "out"
    runner = Runner(data_dir, output_dir, tmp_path / "serving")
    runner.signal_when("StatisticsGen", signal.SIGINT)
    assert runner.finish() == local_runner.EXIT_INTERRUPTED == 130, runner.output[-3000:]
    assert "Traceback" not in runner.output
    assert runner.output.strip().splitlines()[-1] == (
        "interrupted; rerun to resume, finished steps are reused")
    (record,) = records(output_dir)
    assert record["status"] == "interrupted" and record["exit_code"] == 130
    with run_lock.hold(output_dir):  # released
        pass


@pytest.mark.slow
def test_a_run_interrupted_then_killed_resumes_and_a_concurrent_run_is_refused(tmp_path):
    """SIGINT during Transform, SIGKILL during the Trainer (with a second run refused meanwhile),
    then a rerun: it completes and pushes, reusing every step that had finished."""
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=100, ratings_per_user=(25, 50))
    output_dir, serving = tmp_path / "out", tmp_path / "serving"
    args = (data_dir, output_dir, serving)

    first = Runner(*args)
    first.signal_when("Transform", signal.SIGINT, delay=2)
    assert first.finish() == 130, first.output[-3000:]
    assert "Traceback" not in first.output

    second = Runner(*args)
    second.wait_for("Transform")
    concurrent = Runner(*args)
    assert concurrent.finish() == 3, concurrent.output[-3000:]
    assert f"(PID {second.process.pid})" in concurrent.output
    second.signal_when("Trainer", signal.SIGKILL, delay=3)  # inside model training
    assert second.finish() == -signal.SIGKILL
    assert not serving.exists() or not [p for p in serving.iterdir() if p.name.isdigit()]

    third = Runner(*args)
    assert third.finish() == local_runner.EXIT_PUSHED, third.output[-3000:]
    summary = run_summary.summarize_latest_run(str(output_dir / "metadata.sqlite"))
    states = {node: state for node, (state, _) in summary.components.items()}
    # Finished before the kill (the Transform in the second run), so reused.
    for node in ("MovieLensExampleGen", "StatisticsGen", "Transform"):
        assert states[node] == "CACHED", states
    assert states["Trainer"] == "COMPLETE" and states["Pusher"] == "COMPLETE"
    versions = [p for p in serving.iterdir() if p.name.isdigit()]
    assert [p.name for p in versions] == [Path(summary.pushed_to).name]
    assert (versions[0] / "saved_model.pb").is_file()
    # The killed Trainer's execution was left RUNNING; the third run marked it FAILED and said so.
    assert "an interrupted run left running as failed in ML Metadata (Trainer #" in third.output
    assert stale_executions.fail_stale(output_dir / "metadata.sqlite") == []

    # Each run left its record: interrupted, killed (still "running", its PID gone), pushed.
    first_record, killed, last = records(output_dir)  # the refused run wrote none
    assert first_record["status"] == "interrupted"
    assert killed["status"] == "running" and killed["pid"] == second.process.pid
    assert last["status"] == "pushed" and last["exit_code"] == 0
    assert last["pipeline_run_id"] == summary.run_id and last["pushed_to"] == summary.pushed_to
    record_line = next(line for line in third.output.splitlines()
                       if line.startswith("Run record"))
    assert json.loads(Path(record_line.split(": ")[-1]).read_text()) == last
