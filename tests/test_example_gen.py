"""MovieLensExampleGen's Beam executor on generated MovieLens folders: join, splits, bad rows."""

import collections
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import message
from movielens_fixture import write_movielens_fixture
from tfx.components.example_gen import base_example_gen_executor
from tfx.dsl.components.base import base_beam_executor
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from components.movielens_example_gen import batches, slicing
from components.movielens_example_gen import executor as executor_lib
from components.movielens_example_gen.component import MovieLensExampleGen
from components.movielens_example_gen.config import SplitConfig
from models import features
from pipeline import configs


def example_gen_props(data_dir, split=None) -> dict:
    """The component's execution properties as the orchestrator passes them (protos as JSON)."""
    component = MovieLensExampleGen(
        str(data_dir), split=split or SplitConfig(),
        user_activity_edges=configs.EVAL.user_activity_edges,
        movie_popularity_edges=configs.EVAL.movie_popularity_edges)
    return {k: proto_utils.proto_to_json(v) if isinstance(v, message.Message) else v
            for k, v in component.exec_properties.items()}


def run_example_gen(data_dir, out_dir, split=None, beam_args=("--runner=DirectRunner",)):
    """Runs the executor as the orchestrator would; returns {split: [tf.train.Example]}."""
    props = example_gen_props(data_dir, split)
    examples = standard_artifacts.Examples()
    examples.uri = str(out_dir)
    context = base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=list(beam_args))
    executor_lib.Executor(context).Do({}, {"examples": [examples]}, props)
    splits = {}
    for name in ("train", "eval"):
        files = tf.io.gfile.glob(os.path.join(out_dir, f"Split-{name}", "*"))
        records = tf.data.TFRecordDataset(files, compression_type="GZIP")
        splits[name] = [tf.train.Example.FromString(r.numpy()) for r in records]
    return splits, examples


def column(examples, key):
    f = [e.features.feature[key] for e in examples]
    kind = f[0].WhichOneof("kind")
    return np.array([getattr(x, kind).value[0] for x in f])


def read_ratings(folder):
    lines = (folder / "ratings.csv").read_text().splitlines()[1:]
    return [tuple(line.split(",")) for line in lines]


def test_time_split_trains_on_the_past_and_evaluates_on_the_newest_fifth(movielens_dir, tmp_path):
    splits, artifact = run_example_gen(movielens_dir, tmp_path / "out")
    ratings = read_ratings(movielens_dir)
    assert len(splits["train"]) + len(splits["eval"]) == len(ratings)
    train_ts, eval_ts = column(splits["train"], "timestamp"), column(splits["eval"], "timestamp")
    cutoff = np.quantile(np.array([int(r[3]) for r in ratings]), 0.8)
    assert train_ts.max() < cutoff <= eval_ts.min()
    assert len(splits["eval"]) / len(ratings) == pytest.approx(0.2, abs=0.01)
    assert artifact.get_float_custom_property("split_cutoff_timestamp") == pytest.approx(cutoff)
    summary = json.loads((tmp_path / "out" / executor_lib.SUMMARY_FILE).read_text())
    assert summary["examples"] == {"train": len(splits["train"]), "eval": len(splits["eval"])}
    assert summary["rejected_rows"] == 0


def test_examples_carry_the_joined_movie(movielens_dir, tmp_path):
    splits, _ = run_example_gen(movielens_dir, tmp_path / "out")
    by_movie = {}
    for example in splits["train"] + splits["eval"]:
        f = example.features.feature
        by_movie[f["movie_id"].int64_list.value[0]] = f
    amelie = by_movie[3]  # the fixture's first movie: quoted, UTF-8, with a comma
    assert amelie["title"].bytes_list.value[0].decode() == "Amélie, the Fabulous Destiny (1950)"
    assert amelie["year"].int64_list.value == [1950]
    assert by_movie[12]["title"].bytes_list.value == [b"Movie 3"]  # no year in the title
    assert "year" not in by_movie[12]
    assert by_movie[15]["genres"].bytes_list.value == [features.NO_GENRES.encode()]
    assert len(by_movie[9]["genres"].bytes_list.value) == 3  # multi-valued


def test_splits_are_written_as_tfxs_base_executor_writes_them_less_its_shuffle(
        movielens_dir, tmp_path):
    ours, artifact = run_example_gen(movielens_dir, tmp_path / "ours")
    # The same executor through BaseExampleGenExecutor.Do: TFX's WriteSplit, Reshuffle included.
    tfxs = standard_artifacts.Examples()
    tfxs.uri = str(tmp_path / "tfx")
    executor = executor_lib.Executor(base_beam_executor.BaseBeamExecutor.Context(
        beam_pipeline_args=["--runner=DirectRunner"]))
    base_example_gen_executor.BaseExampleGenExecutor.Do(
        executor, {}, {"examples": [tfxs]},
        dict(example_gen_props(movielens_dir), _examples_uri=tfxs.uri))

    def records(uri, name):
        files = tf.io.gfile.glob(os.path.join(uri, f"Split-{name}", "*"))
        assert {os.path.basename(f).split("-")[0] for f in files} == {"data_tfrecord"}
        # Canonical bytes: a map's serialized order may differ between two runs of one writer.
        return sorted(tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
                      for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))

    for name in ("train", "eval"):
        assert records(artifact.uri, name) == records(tfxs.uri, name)
        assert len(records(artifact.uri, name)) == len(ours[name]) > 0
    assert artifact.split_names == tfxs.split_names == '["train", "eval"]'
    for key in ("payload_format", "file_format"):
        assert artifact.get_string_custom_property(key) == tfxs.get_string_custom_property(key)
    assert artifact.get_string_custom_property("file_format") == "tfrecords_gzip"


@pytest.mark.parametrize("method", ["time", "user_time", "random"])
def test_three_reads_of_large_files_give_what_one_read_gives(movielens_dir, tmp_path, method,
                                                             monkeypatch, caplog):
    """Above STREAMING_READS_ABOVE_BYTES the cutoff, the train counts and the examples each
    come from their own read of the files: the same examples and summary as one read."""
    split = SplitConfig(method=method)
    runs = {}
    for name, threshold in (("once", 1 << 40), ("three times", 0)):
        monkeypatch.setattr(executor_lib, "STREAMING_READS_ABOVE_BYTES", threshold)
        caplog.clear()
        with caplog.at_level("INFO", logger=executor_lib.__name__):
            runs[name] = run_example_gen(movielens_dir, tmp_path / name.replace(" ", "_"), split)
        assert f"of ratings {name}" in caplog.text

    def canonical(examples):
        return sorted(e.SerializeToString(deterministic=True) for e in examples)

    (once, once_artifact), (three, three_artifact) = runs["once"], runs["three times"]
    for name in ("train", "eval"):
        assert canonical(three[name]) == canonical(once[name])
        assert len(once[name]) > 0
    summaries = [json.loads(open(os.path.join(a.uri, executor_lib.SUMMARY_FILE)).read())
                 for a in (once_artifact, three_artifact)]
    assert summaries[0] == summaries[1]


def test_random_split_is_seeded_and_stable(movielens_dir, tmp_path):
    split = SplitConfig(method="random", eval_fraction=0.1, seed=7)
    first, _ = run_example_gen(movielens_dir, tmp_path / "a", split)
    again, _ = run_example_gen(movielens_dir, tmp_path / "b", split)
    other, _ = run_example_gen(movielens_dir, tmp_path / "c", SplitConfig("random", 0.1, seed=8))

    def keys(examples):
        return sorted(zip(column(examples, "user_id"), column(examples, "movie_id"), strict=True))

    assert keys(first["eval"]) == keys(again["eval"])
    assert keys(first["eval"]) != keys(other["eval"])
    total = len(first["train"]) + len(first["eval"])
    assert len(first["eval"]) / total == pytest.approx(0.1, abs=0.03)


def test_user_time_split_evaluates_each_users_newest_ratings(movielens_dir, tmp_path):
    splits, artifact = run_example_gen(movielens_dir, tmp_path / "out",
                                       SplitConfig(method="user_time", eval_fraction=0.2))
    times: dict[int, list[int]] = collections.defaultdict(list)
    for user, _, _, ts in read_ratings(movielens_dir):
        times[int(user)].append(int(ts))
    by_split = {}
    for name, examples in splits.items():
        by_user: dict[int, list[int]] = collections.defaultdict(list)
        for user, ts in zip(column(examples, "user_id"), column(examples, "timestamp"),
                            strict=True):
            by_user[int(user)].append(int(ts))
        by_split[name] = by_user
    for user, stamps in times.items():
        train, held_out = by_split["train"].get(user, []), by_split["eval"].get(user, [])
        assert sorted(train + held_out) == sorted(stamps)
        # int(0.2 * n) of the newest evaluate, more only where the cutoff time is shared.
        newest = sorted(stamps)[len(stamps) - int(0.2 * len(stamps)):]
        if int(0.2 * len(stamps)) == 0 or min(newest) == min(stamps):
            assert not held_out
            continue
        assert min(held_out) == min(newest) and (not train or max(train) < min(held_out))
        assert len(held_out) >= int(0.2 * len(stamps))
    # Every user with 5 or more ratings (not all at one time) is in both splits; no global
    # time cutoff is recorded.
    held = {u for u, s in times.items()
            if int(0.2 * len(s)) and sorted(s)[len(s) - int(0.2 * len(s))] > min(s)}
    assert set(by_split["eval"]) == held and len(held) > 0.9 * len(times)
    assert set(by_split["train"]) == set(times)
    assert "split_cutoff_timestamp" not in artifact.mlmd_artifact.custom_properties


BAD_ROWS = [
    "1,3,abc,1200000000",  # not a number
    "1,3,4.0",  # 3 fields
    "2,999999,4.0,1200000000",  # unknown movie
    "",  # an empty line: skipped silently, neither kept nor rejected
    "1,3,7.5,1200000000",  # parses, but out of the schema's range: quarantined
    "1,3,-1.0,1200000000",
    "1,3,,964982703",  # empty rating
    '"1","3","4.5","1200000000"',  # quoted, still good
]
BAD_LINES = {  # the row -> what its rejected_rows.txt entry says after the line number
    "1,3,abc,1200000000": "field 'rating' is not a number: 'abc'",
    "1,3,4.0": "expected 4 fields",
    "2,999999,4.0,1200000000": "field 'movieId': 999999 is not in movies.csv",
    "1,3,7.5,1200000000": "field 'rating' is out of range 0.5..5: '7.5'",
    "1,3,-1.0,1200000000": "field 'rating' is out of range 0.5..5: '-1.0'",
    "1,3,,964982703": "field 'rating' is not a number: ''",
}


def _line_numbers(path, rows):
    """1-based line numbers of `rows` in the file at `path` (header = line 1)."""
    lines = path.read_bytes().split(b"\n")
    return {row: lines.index(row.encode() + b"\r") + 1 for row in rows}


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_bad_rows_are_named_by_file_and_line_and_good_rows_kept(tmp_path, mode, monkeypatch):
    monkeypatch.setattr(batches, "BATCH_LINES", 16)  # bad rows in several batches
    folder = write_movielens_fixture(tmp_path / "data", extra_rating_rows=BAD_ROWS[:4])
    ratings_csv = folder / "ratings.csv"
    # A UTF-8 BOM before the header, bad rows in the middle of the file, one not UTF-8: CRLF.
    head, *rows = ratings_csv.read_bytes().split(b"\r\n")
    middle = [r.encode() for r in BAD_ROWS[4:]] + [b"1,3,\xff4.0,1200000000"]
    ratings_csv.write_bytes(b"\r\n".join(
        [b"\xef\xbb\xbf" + head] + rows[:40] + middle + rows[40:]))
    beam_args = ["--runner=DirectRunner", f"--direct_running_mode={mode}"]
    if mode == "multi_processing":
        beam_args.append("--direct_num_workers=2")
    splits, _ = run_example_gen(folder, tmp_path / "out",
                                SplitConfig(max_rejected_fraction=0.01), beam_args)
    lines = _line_numbers(ratings_csv, BAD_LINES)
    # All lines but the header, the end, the empty line, the bad ones and the one not UTF-8.
    good = len(ratings_csv.read_bytes().split(b"\r\n")) - 3 - len(BAD_LINES) - 1
    assert len(splits["train"]) + len(splits["eval"]) == good
    rejected = (tmp_path / "out" / executor_lib.REJECTED_FILE).read_text().splitlines()
    assert len(rejected) == len(BAD_LINES) + 1
    for row, why in BAD_LINES.items():
        expected = f"{ratings_csv} line {lines[row]}: {why}"
        assert any(r.startswith(expected) and r.endswith(f"(row {row!r})") for r in rejected), (
            expected, rejected)
    assert any(r.startswith(f"{ratings_csv} line {41 + len(middle)}: not UTF-8 text")
               for r in rejected), rejected
    # The header after a BOM is neither rejected nor a bad header.
    assert not any(" line 1: " in r or "'userId' is not an integer" in r for r in rejected)


def test_too_many_bad_rows_fail_naming_the_lines_and_the_list(tmp_path):
    folder = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5),
                                     extra_rating_rows=["x,y,z,w"] * 10)
    with pytest.raises(ValueError, match=(
            r"10 of \d+ rows of .*ratings.csv could not be used \(limit: 1.0%\): "
            r"lines 27, 28, 29, 30, 31 and 5 more\. Each line and why is in .*rejected_rows.txt")):
        run_example_gen(folder, tmp_path / "out")


def test_movie_rows_are_named_by_their_first_line(tmp_path):
    folder = write_movielens_fixture(tmp_path / "data", n_users=5, ratings_per_user=(5, 5))
    with open(folder / "movies.csv", "a", newline="", encoding="utf-8") as f:
        f.write('x1,"A title,\r\nover two lines (2000)",Drama\r\n0,Zero (2000),Drama\r\n')
    run_example_gen(folder, tmp_path / "out", SplitConfig(max_rejected_fraction=0.5))
    rejected = (tmp_path / "out" / executor_lib.REJECTED_FILE).read_text().splitlines()
    assert rejected == [
        f"{folder / 'movies.csv'} line 92: field 'movieId' is not an integer: 'x1'",
        f"{folder / 'movies.csv'} line 94: field 'movieId' is below 1: '0'",
    ]


def test_a_ratings_file_with_only_a_header_is_named(tmp_path):
    folder = write_movielens_fixture(tmp_path / "data", n_users=2, ratings_per_user=(2, 2))
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp\r\n")
    with pytest.raises(ValueError, match=r"ratings.csv has no usable rating \(0 rows rejected"):
        run_example_gen(folder, tmp_path / "out")


def test_missing_files_are_named(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "movies.csv").write_text("movieId,title,genres\n")
    with pytest.raises(FileNotFoundError, match="ratings.csv not found"):
        run_example_gen(tmp_path / "data", tmp_path / "out")


def test_split_config_rejects_nonsense():
    with pytest.raises(ValueError, match="split method"):
        SplitConfig(method="by-user")
    with pytest.raises(ValueError, match="eval_fraction"):
        SplitConfig(eval_fraction=1.5)


def test_slice_buckets_count_train_ratings_only(tmp_path):
    # User 999 rates only after every other rating: unknown in training, cold start.
    folder = write_movielens_fixture(tmp_path / "data", n_users=40, ratings_per_user=(1, 30),
                                     extra_rating_rows=["999,3,4.0,1300000000",
                                                        "999,6,3.5,1300000001"])
    splits, _ = run_example_gen(folder, tmp_path / "out")
    user_counts = collections.Counter(column(splits["train"], "user_id"))
    movie_counts = collections.Counter(column(splits["train"], "movie_id"))
    edges = configs.EVAL.user_activity_edges
    seen = set()
    for example in splits["train"] + splits["eval"]:
        f = example.features.feature
        user, movie = f["user_id"].int64_list.value[0], f["movie_id"].int64_list.value[0]
        activity = f[features.USER_ACTIVITY].bytes_list.value
        popularity = f[features.MOVIE_POPULARITY].bytes_list.value
        assert activity == [slicing.bucket_label(user_counts[user], edges).encode()]
        assert popularity == [slicing.bucket_label(
            movie_counts[movie], configs.EVAL.movie_popularity_edges).encode()]
        seen.add(activity[0].decode())
    assert seen == {"0", "1-19", "20-100"}


def test_offsets_survive_the_reader_splitting_the_file(tmp_path):
    """Beam reads a large file in parallel bundles: each line's offset must still be its own."""
    from apache_beam.io import source_test_utils

    path = tmp_path / "ratings.csv"
    lines = [b"\xef\xbb\xbfuserId,movieId,rating,timestamp"] + [
        f"{i},3,4.0,{1200000000 + i}".encode() for i in range(1, 200)]
    data = b"\r\n".join(lines[:100]) + b"\n" + b"\n".join(lines[100:]) + b"\n"  # CRLF, then LF
    path.write_bytes(data)
    source = executor_lib._LineBatches(str(path), batch_lines=3)
    bundles = list(source.split(desired_bundle_size=256))
    assert len(bundles) > 10
    read = [batch for b in bundles for batch in source_test_utils.read_from_source(
        b.source, b.start_position, b.stop_position)]
    assert max(len(lines) for _, lines in read) == 3
    records = [record for offsets, lines in read for record in zip(offsets, lines, strict=True)]
    assert [line for _, line in records] == lines[1:]
    assert all(data[offset:].startswith(line) for offset, line in records)
    numbered = list(executor_lib._number_rejects(
        [(offset, "x") for offset, _ in records[::-1]], str(path)))
    assert numbered == [f"{path} line {n}: x" for n in range(2, 201)]


@pytest.mark.parametrize("high", [2**31, 2**40])
def test_the_time_cutoff_is_numpys_quantile_of_every_timestamp(high):
    """The cutoff's combine keeps timestamps in 4 bytes where they fit: the same quantile."""
    rng = np.random.default_rng(0)
    times = rng.integers(0, high, 10_001)
    times[::7] = times[3]  # ties
    quantile = executor_lib._TimestampQuantile(0.8)
    accs = [quantile.add_input(quantile.create_accumulator(), chunk)
            for chunk in np.array_split(times, 7)]
    merged = quantile.merge_accumulators([quantile.merge_accumulators(accs[:3]), *accs[3:]])
    assert quantile.extract_output(merged) == float(np.quantile(times.astype(np.int64), 0.8))
    assert quantile.extract_output(quantile.create_accumulator()) is None
