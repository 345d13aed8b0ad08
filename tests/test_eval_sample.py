"""EvalSample (components/evaluation/eval_sample.py): which users the Evaluators read, and that
the sampled split holds exactly their examples, whole and unchanged."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.evaluation.eval_sample import SAMPLE_FILE, SampleInfo, choose_users, write_sample
from models import features


def test_every_rating_fits_keeps_all():
    assert choose_users(np.array([3, 1, 3, 2]), max_ratings=4, seed=0) is None


def test_whole_users_under_the_cap():
    rng = np.random.default_rng(1)
    user_ids = rng.integers(0, 500, 20_000)
    kept = choose_users(user_ids, max_ratings=5_000, seed=7)
    counts = dict(zip(*np.unique(user_ids, return_counts=True), strict=True))
    total = sum(counts[u] for u in kept)
    assert total <= 5_000
    # The next user in the seeded order would pass the cap: nearly full.
    assert total > 5_000 - max(counts.values())
    assert list(kept) == sorted(set(kept.tolist()))


def test_seeded():
    user_ids = np.repeat(np.arange(1000), 3)
    first, again = (choose_users(user_ids, 300, seed=0) for _ in range(2))
    other = choose_users(user_ids, 300, seed=1)
    assert np.array_equal(first, again)
    assert len(first) == len(other) == 100
    assert not np.array_equal(first, other)


def test_one_user_above_the_cap_is_kept():
    kept = choose_users(np.array([5] * 10 + [6] * 10), max_ratings=4, seed=0)
    assert len(kept) == 1


def _write_split(folder, user_ids) -> list[bytes]:
    """gzipped TFRecords of tf.Examples with a user and a movie id; the serialized examples."""
    os.makedirs(folder)
    records = [tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(u)])),
        features.MOVIE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
    })).SerializeToString() for i, u in enumerate(user_ids)]
    half = len(records) // 2
    for name, part in (("a.gz", records[:half]), ("b.gz", records[half:])):
        with tf.io.TFRecordWriter(os.path.join(folder, name), "GZIP") as writer:
            for record in part:
                writer.write(record)
    return records


def _read(folder) -> list[bytes]:
    files = sorted(tf.io.gfile.glob(os.path.join(folder, "*")))
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def test_small_split_is_copied(tmp_path):
    records = _write_split(tmp_path / "in", [1, 2, 2, 3])
    info = write_sample(str(tmp_path / "in"), str(tmp_path / "out"), max_ratings=10, seed=0)
    assert _read(tmp_path / "out") == records
    assert not info.sampled
    assert (info.eval_users, info.eval_ratings, info.kept_users, info.kept_ratings) == (3, 4, 3, 4)


def test_sample_holds_exactly_the_kept_users_examples(tmp_path):
    user_ids = np.random.default_rng(3).integers(0, 200, 3_000)
    records = _write_split(tmp_path / "in", user_ids)
    info = write_sample(str(tmp_path / "in"), str(tmp_path / "out"), max_ratings=1_000, seed=4)
    kept = set(choose_users(user_ids, 1_000, seed=4).tolist())
    expected = [r for r, u in zip(records, user_ids, strict=True) if u in kept]
    assert _read(tmp_path / "out") == expected
    assert info.sampled
    assert (info.kept_users, info.kept_ratings) == (len(kept), len(expected))
    assert (info.eval_users, info.eval_ratings) == (len(set(user_ids.tolist())), 3_000)
    assert "seeded sample" in info.describe() and f"{len(expected):,}" in info.describe()


def test_empty_split_names_the_folder(tmp_path):
    os.makedirs(tmp_path / "in")
    with pytest.raises(FileNotFoundError, match="no eval examples in .*in"):
        write_sample(str(tmp_path / "in"), str(tmp_path / "out"), 10, 0)


def test_info_round_trip(tmp_path):
    info = SampleInfo(eval_users=10, eval_ratings=100, kept_users=4, kept_ratings=40,
                      max_ratings=50, seed=0)
    (tmp_path / SAMPLE_FILE).write_text(json.dumps(dataclasses.asdict(info)))
    assert SampleInfo.load(str(tmp_path)) == info
    assert SampleInfo.load(str(tmp_path / "missing")) is None
