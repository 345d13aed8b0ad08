"""A rerun with unchanged inputs runs nothing and pushes nothing (pipeline/run_record.py,
pipeline/local_runner.py); any change of data, code, configuration or served version runs."""

import datetime
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from movielens_fixture import write_movielens_fixture

from pipeline import fingerprints, run_record

ROOT = Path(__file__).resolve().parent.parent


def make_record(data_dir: Path, config: dict, started: datetime.datetime) -> dict:
    return run_record.new_record(data_root=data_dir, repo=ROOT, config=config, started=started)


def finished(root: Path, record: dict, status: str, pushed_to: str | None,
             started: datetime.datetime) -> Path:
    path = run_record.record_path(root, started)
    run_record.write(record, path)
    run_record.finish(record, path, status, 0, pushed_to=pushed_to, summary="the summary")
    return path


def serve(serving: Path, version: int) -> Path:
    (serving / str(version)).mkdir(parents=True)
    (serving / str(version) / "saved_model.pb").write_bytes(b"model")
    return serving / str(version)


@pytest.fixture
def setting(tmp_path):
    data = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(3, 5))
    return data, tmp_path / "root", tmp_path / "serving"


def test_the_run_that_pushed_the_served_version_is_found(setting):
    data, root, serving = setting
    t0 = datetime.datetime(2026, 1, 1)
    config = {"hparams": {"model_type": "neural"}, "source": "abc"}
    pushed = finished(root, make_record(data, config, t0), "pushed", str(serve(serving, 100)), t0)
    # A later run with other inputs that was refused pushed nothing: not a reason to rerun.
    t1 = t0 + datetime.timedelta(minutes=5)
    finished(root, make_record(data, {**config, "force_bad_model": True}, t1), "not pushed", None,
             t1)
    now = make_record(data, config, t1 + datetime.timedelta(minutes=5))
    path, earlier = run_record.find_unchanged(now, root, serving)
    assert path == pushed and earlier["status"] == "pushed"


def test_changed_data_configuration_or_code_is_not_unchanged(setting):
    data, root, serving = setting
    t0 = datetime.datetime(2026, 1, 1)
    config = {"hparams": {"model_type": "neural"}, "source": "abc"}
    finished(root, make_record(data, config, t0), "pushed", str(serve(serving, 100)), t0)
    later = t0 + datetime.timedelta(minutes=1)
    assert run_record.find_unchanged(make_record(data, {**config, "source": "abd"}, later),
                                     root, serving) is None
    assert run_record.find_unchanged(
        make_record(data, {**config, "hparams": {"model_type": "mf"}}, later),
        root, serving) is None
    with open(data / "ratings.csv", "a") as f:
        f.write("998,3,4.0,1300000000\n")
    assert run_record.find_unchanged(make_record(data, config, later), root, serving) is None


def test_a_newer_or_missing_served_version_is_not_unchanged(setting):
    data, root, serving = setting
    t0 = datetime.datetime(2026, 1, 1)
    config = {"source": "abc"}
    version = serve(serving, 100)
    finished(root, make_record(data, config, t0), "pushed", str(version), t0)
    later = t0 + datetime.timedelta(minutes=1)
    assert run_record.find_unchanged(make_record(data, config, later), root, serving)
    serve(serving, 101)  # pushed by someone else since: the run would compare against it
    assert run_record.find_unchanged(make_record(data, config, later), root, serving) is None
    (serving / "101" / "saved_model.pb").unlink()
    (version / "saved_model.pb").unlink()  # deleted by hand: nothing complete is served
    assert run_record.find_unchanged(make_record(data, config, later), root, serving) is None


def test_the_source_fingerprint_follows_every_source_file(tmp_path):
    for name in ("models/a.py", "components/x/b.py", "pipeline/c.py", "schema/schema.pbtxt",
                 "bench/d.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    before = fingerprints.source_fingerprint(tmp_path)
    (tmp_path / "bench/d.py").write_text("a benchmark is not run by the pipeline")
    assert fingerprints.source_fingerprint(tmp_path) == before
    for name in ("components/x/b.py", "schema/schema.pbtxt"):
        (tmp_path / name).write_text("edited")
        assert fingerprints.source_fingerprint(tmp_path) != before
        before = fingerprints.source_fingerprint(tmp_path)


def run_runner(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "pipeline.local_runner", "--offline", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def pushed_run(tmp_path: Path) -> tuple[Path, Path, Path, tuple[str, ...]]:
    """(data folder, output folder, serving folder, the runner's arguments) after a first run of
    a generated data set that pushed."""
    data = write_movielens_fixture(tmp_path / "data", n_users=60, ratings_per_user=(20, 40))
    out, serving = tmp_path / "out", tmp_path / "serving"
    args = ("--data-dir", str(data), "--output-dir", str(out), "--serving-model-dir",
            str(serving))
    first = run_runner(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    return data, out, serving, args


@pytest.mark.e2e
def test_a_rerun_with_nothing_changed_runs_nothing_and_pushes_nothing(tmp_path):
    data, out, serving, args = pushed_run(tmp_path)
    (version,) = [p for p in serving.iterdir() if p.name.isdigit()]

    rerun = run_runner(*args, "--verbose")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Nothing changed since the run of" in rerun.stdout
    assert f"Serving version {version.name}: {version}" in rerun.stdout
    assert "Model BLESSED" in rerun.stdout  # the summary of the run that did the work
    # Nothing ran: no TensorFlow start-up (its lines show with --verbose), no new version.
    assert "tensorflow" not in rerun.stderr.lower()
    assert [p for p in serving.iterdir() if p.name.isdigit()] == [version]
    records = [json.loads(p.read_text()) for p in sorted((out / "movielens-tfx" / "runs")
                                                         .glob("*.json"))]
    assert [r["status"] for r in records] == ["pushed", "unchanged"]
    assert records[1]["pushed_to"] == str(version)
    assert records[1]["inputs_digest"] == records[0]["inputs_digest"]


@pytest.mark.slow  # a third pipeline run; find_unchanged's refusal of new data is unit-tested
@pytest.mark.e2e
def test_new_data_after_a_pushed_run_runs_every_step_again(tmp_path):
    data, out, serving, args = pushed_run(tmp_path)
    (record,) = [json.loads(p.read_text())
                 for p in (out / "movielens-tfx" / "runs").glob("*.json")]

    # New data: the pipeline runs, the ExampleGen and the Trainer included (whether the new
    # model is blessed against the served one is the evaluation's business: exit 0 or 2).
    with open(data / "ratings.csv", "a") as f:
        f.write("998,3,4.0,1300000000\n")  # a new user's rating
    changed = run_runner(*args)
    assert changed.returncode in (0, 2), changed.stderr[-3000:]
    assert "Nothing changed" not in changed.stdout
    ran = [line.split()[2] for line in changed.stderr.splitlines()
           if " INFO " in line and line.rstrip().endswith(" s")]
    assert {"MovieLensExampleGen", "Trainer", "Evaluator"} <= set(ran), ran
    last = json.loads(sorted((out / "movielens-tfx" / "runs").glob("*.json"))[-1].read_text())
    assert last["status"] in ("pushed", "not pushed")
    assert last["inputs_digest"] != record["inputs_digest"]
