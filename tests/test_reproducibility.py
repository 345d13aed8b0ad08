"""Reproducibility (README: Failure modes): the run record says what a run ran on, and the same
data and seed give the same split and vocabularies, through the real ExampleGen and Transform."""

import dataclasses
import datetime
import hashlib
import json
import subprocess
from importlib import metadata as importlib_metadata
from pathlib import Path

import pytest
import tensorflow as tf
from movielens_fixture import write_movielens_fixture
from pipelines import local_pipeline
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from pipeline import configs, run_record, run_summary

ROOT = Path(__file__).resolve().parent.parent


def test_the_record_has_checksums_versions_commit_and_configuration(tmp_path, monkeypatch):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5))
    config = {"split": dataclasses.asdict(configs.SPLIT), "hparams": configs.HPARAMS.to_config()}
    record = run_record.new_record(data_root=data_dir, repo=ROOT, config=config,
                                   started=datetime.datetime(2026, 1, 2, 3, 4, 5))
    for name in ("ratings.csv", "movies.csv"):
        content = (data_dir / name).read_bytes()
        assert record["data"]["files"][name] == {
            "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}
    assert record["packages"]["tfx"] == importlib_metadata.version("tfx")
    assert set(record["packages"]) >= {"tensorflow", "tensorflow-transform", "apache-beam",
                                       "tensorflow-model-analysis", "tensorflow-recommenders",
                                       "numpy"}
    assert all(record["packages"].values())
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        assert "error" in record["git"]  # a copy without git: said so, not a crash
    else:
        assert record["git"]["commit"] == head and isinstance(record["git"]["dirty"], bool)
    assert record["status"] == "running" and record["python"].startswith("3.10")

    path = run_record.record_path(tmp_path / "pipeline", datetime.datetime.now())
    run_record.write(record, path)
    run_record.finish(record, path, "pushed", 0, pushed_to="/somewhere/1")
    written = json.loads(path.read_text())
    assert written["config"] == json.loads(json.dumps(config))  # JSON, tuples as lists
    assert written["status"] == "pushed" and written["exit_code"] == 0 and written["finished"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    # Outside a checkout (an installed copy): said so in the record, not a crash.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "copy").mkdir()
    assert "error" in run_record.git_state(tmp_path / "copy")


def run_to(node: str, data_dir: Path, root: Path, split) -> dict:
    """A partial run of the real pipeline up to `node` in its own ML Metadata store (no cache
    shared with another run); {component id: output artifacts}."""
    LocalDagRunner().run(local_pipeline(data_dir, root, split=split),
                         run_options=tfx_pipeline.RunOptions(to_nodes=[node]))
    store = run_summary.open_store(str(root / "metadata.sqlite"))
    run = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    return run_summary.node_outputs(store, run.id)


def split_contents(examples_uri: str) -> dict[str, list[bytes]]:
    """{split: its tf.Examples, sorted}: shards and record order may vary, and so may the order
    of features in the bytes (a protobuf map), so each is re-serialized deterministically."""
    def canonical(record: bytes) -> bytes:
        return tf.train.Example.FromString(record).SerializeToString(deterministic=True)

    return {split.name: sorted(canonical(r) for r in tf.data.TFRecordDataset(
        [str(f) for f in split.glob("*.gz")], compression_type="GZIP").as_numpy_iterator())
        for split in sorted(Path(examples_uri).glob("Split-*"))}


def vocabularies(transform_graph_uri: str) -> dict[str, bytes]:
    assets = Path(transform_graph_uri) / "transform_fn" / "assets"
    return {p.name: p.read_bytes() for p in sorted(assets.iterdir())}


def only(outputs: dict, node: str, type_name: str) -> str:
    (artifact,) = [a for a in outputs[node] if a.type == type_name]
    return artifact.uri


@pytest.mark.e2e
def test_the_same_data_and_seed_give_the_same_split_and_vocabularies(tmp_path):
    data_dir = write_movielens_fixture(tmp_path / "data", n_users=60, ratings_per_user=(10, 30))
    # The seeded random split: the one whose result the seed decides.
    split = dataclasses.replace(configs.SPLIT, method="random")
    first = run_to("Transform", data_dir, tmp_path / "first", split)
    second = run_to("Transform", data_dir, tmp_path / "second", split)

    examples = [split_contents(only(run, "MovieLensExampleGen", "Examples"))
                for run in (first, second)]
    assert set(examples[0]) == {"Split-train", "Split-eval"}
    assert examples[0] == examples[1]
    assert all(len(examples[0][s]) > 0 for s in examples[0])
    summaries = [json.loads((Path(only(run, "MovieLensExampleGen", "Examples"))
                             / "split_summary.json").read_text()) for run in (first, second)]
    assert summaries[0] == summaries[1]

    vocabs = [vocabularies(only(run, "Transform", "TransformGraph")) for run in (first, second)]
    assert set(vocabs[0]) == {"user_id", "movie_id"} and all(vocabs[0].values())
    assert vocabs[0] == vocabs[1]

    # The comparison can fail: another seed gives another split of the same data.
    other = run_to("MovieLensExampleGen", data_dir, tmp_path / "other",
                   dataclasses.replace(split, seed=split.seed + 1))
    other_examples = split_contents(only(other, "MovieLensExampleGen", "Examples"))
    assert other_examples["Split-eval"] != examples[0]["Split-eval"]
    # (The same ratings, split otherwise; not the same bytes: the activity and popularity
    # slice features count train ratings.)
    assert sum(map(len, other_examples.values())) == sum(map(len, examples[0].values()))
