"""EvalSample: the eval split the two TFMA Evaluators read, capped at a seeded sample of users.

TFMA's cost grows with the examples and their slices (each rating is in about six: overall, its
genres, its user-activity and movie-popularity buckets), and at 5M ratings the two Evaluators
took half the run (docs/benchmarks.md, "Scaling"). Above `max_ratings` eval ratings this
component keeps whole users, in a seeded random order, while their ratings fit under the cap:
the blessing rules' intervals are bootstraps over users, so a random sample of users is what
they already resample, and the interval widens as the evidence shrinks. At or below the cap
(ml-latest-small and anything of its size) the split is copied unchanged. The TopKEvaluator
reads the whole split: ranking the catalogue for every eval user is cheap.

What was kept goes into the output artifact's custom properties and `sample.json` (SampleInfo);
the report and the run summary print it. The pipeline wires it between the ExampleGen and the
Evaluators (pipeline/pipeline.py); EvalSettings.max_eval_ratings and .bootstrap_seed set it.
"""

# No `from __future__ import annotations`: TFX's @component reads the annotations as types.
import dataclasses
import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts

from models import features

EVAL_SPLIT = "eval"
SAMPLE_FILE = "sample.json"
_BATCH = 16384
_RECORDS_FILE = "data_tfrecord-00000-of-00001.gz"


@dataclasses.dataclass(frozen=True)
class SampleInfo:
    """What the Evaluators read of the eval split: all of it (`sampled` False) or whole users."""

    eval_users: int
    eval_ratings: int
    kept_users: int
    kept_ratings: int
    max_ratings: int
    seed: int

    @property
    def sampled(self) -> bool:
        return self.kept_ratings < self.eval_ratings

    def describe(self) -> str:
        if not self.sampled:
            return (f"every eval rating ({self.eval_ratings:,} of {self.eval_users:,} users; "
                    f"at most {self.max_ratings:,} are evaluated)")
        return (f"a seeded sample of users (seed {self.seed}): {self.kept_users:,} of "
                f"{self.eval_users:,} eval users, {self.kept_ratings:,} of "
                f"{self.eval_ratings:,} ratings (at most {self.max_ratings:,} are evaluated)")

    @classmethod
    def load(cls, uri: str) -> Optional["SampleInfo"]:
        path = os.path.join(uri, SAMPLE_FILE)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as f:
            return cls(**json.loads(f.read()))


def choose_users(user_ids: np.ndarray, max_ratings: int, seed: int) -> np.ndarray | None:
    """The users whose ratings are evaluated, sorted: whole users in a seeded random order while
    their ratings fit under max_ratings (at least one user); None when every rating fits.

    user_ids: int64 [N], one per eval rating."""
    if len(user_ids) <= max_ratings:
        return None
    users, counts = np.unique(user_ids, return_counts=True)
    order = np.random.default_rng(seed).permutation(len(users))
    fitting = int(np.searchsorted(np.cumsum(counts[order]), max_ratings, side="right"))
    return np.sort(users[order[:max(1, fitting)]])


def _batches(files: list[str]):
    """(serialized tf.Examples [b], their user ids int64 [b]) of gzipped TFRecord files."""
    spec = {features.USER_ID: tf.io.FixedLenFeature([], tf.int64)}
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(_BATCH):
        yield batch, tf.io.parse_example(batch, spec)[features.USER_ID].numpy()


def write_sample(source_dir: str, output_dir: str, max_ratings: int, seed: int) -> SampleInfo:
    """Copies a split folder of gzipped TFRecords of tf.Examples, or the sample of its users
    that choose_users keeps, into output_dir; what it kept."""
    files = sorted(tf.io.gfile.glob(os.path.join(source_dir, "*")))
    if not files:
        raise FileNotFoundError(f"EvalSample: no eval examples in {source_dir}")
    user_ids = np.concatenate([users for _, users in _batches(files)])
    kept = choose_users(user_ids, max_ratings, seed)
    tf.io.gfile.makedirs(output_dir)
    if kept is None:
        for path in files:
            tf.io.gfile.copy(path, os.path.join(output_dir, os.path.basename(path)),
                             overwrite=True)
        kept_users, kept_ratings = len(np.unique(user_ids)), len(user_ids)
    else:
        kept_users, kept_ratings = len(kept), 0
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(output_dir, _RECORDS_FILE), options) as writer:
            for records, users in _batches(files):
                for record in records.numpy()[np.isin(users, kept)]:
                    writer.write(record)
                    kept_ratings += 1
    return SampleInfo(eval_users=len(np.unique(user_ids)), eval_ratings=len(user_ids),
                      kept_users=kept_users, kept_ratings=kept_ratings,
                      max_ratings=max_ratings, seed=seed)


@component
def EvalSample(  # noqa: N802 - TFX component names are classes
    examples: InputArtifact[standard_artifacts.Examples],
    sample: OutputArtifact[standard_artifacts.Examples],
    max_ratings: Parameter[int],
    seed: Parameter[int] = 0,
) -> None:
    """The eval split of `examples`, or a seeded sample of its users (module docstring)."""
    info = write_sample(artifact_utils.get_split_uri([examples], EVAL_SPLIT),
                        os.path.join(sample.uri, f"Split-{EVAL_SPLIT}"), max_ratings, seed)
    sample.split_names = artifact_utils.encode_split_names([EVAL_SPLIT])
    for name, value in dataclasses.asdict(info).items():
        sample.set_int_custom_property(name, value)
    with tf.io.gfile.GFile(os.path.join(sample.uri, SAMPLE_FILE), "w") as f:
        f.write(json.dumps(dataclasses.asdict(info), indent=2) + "\n")
