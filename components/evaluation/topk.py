"""TopKEvaluator: the candidate's top-k recommendations against the popularity baseline and the
latest blessed model, and the top-k blessing rules.

Users consume the `recommend` signature's top k of the pushed model, and a full-catalogue ranking
per user is not a per-example metric, so TFMA does not fit. Protocol, on the ExampleGen's splits:
- users: those with ratings in the train split and at least one in the eval split (a user
  without train ratings is cold start: `recommend` gives them the same list as anyone unseen);
- relevant: every movie the user rated in the eval split;
- lists: the k movies each model's `recommend` returns (it leaves out the user's train movies);
  the popularity baseline's are the k most-rated train-split movies the user has not rated there;
- metrics (models.ranking_metrics): precision, recall, NDCG and MAP at k, averaged over users,
  and catalogue coverage (distinct recommended movies / movies rated in either split, the
  exported model's catalogue); overall and per user-activity bucket (train ratings of the user,
  the ExampleGen's buckets).
Rules (EvalSettings, rule texts in results.RULES), each on the paired bootstrap interval over
users of the change in mean NDCG@k (components/evaluation/bootstrap.py: the per-user NDCG
differences resampled): refused when the whole interval lies below min_ndcg_over_popularity
against the popularity baseline, or below -max_ndcg_regression_vs_blessed against the latest
blessed model (skipped when no model was blessed before).
"""

# No `from __future__ import annotations`: TFX's @component reads the annotations as types.
import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.component.experimental.annotations import (
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from components.evaluation import bootstrap, results
from components.movielens_example_gen.slicing import bucket_label, bucket_labels
from models import contract, features, memory, ranking_metrics
from models.ranking_metrics import PAD

_LOG = logging.getLogger(__name__)
METRICS_FILE = "topk_metrics.json"
# The bucket of every user, next to the activity buckets.
OVERALL = "overall"
COVERAGE = "coverage"
# Every metric of a model's lists, in report order, with its title ({k}: the k of the lists):
# ranking_metrics.METRICS and coverage.
METRIC_TITLES = {results.NDCG: "NDCG@{k}", "precision": "precision@{k}", "recall": "recall@{k}",
                 "map": "MAP@{k}", COVERAGE: "coverage"}
TRAIN_SPLIT, EVAL_SPLIT = "train", "eval"
# NDCGs are means of float sums: differences at a rule's bound are off by ~1e-17.
_ROUNDING = 1e-9


@dataclasses.dataclass(frozen=True)
class TopKSettings:
    """The EvalSettings fields this component reads (components never import pipeline.configs;
    the defaults and their reasons are there)."""

    topk_k: int
    min_ndcg_over_popularity: float
    max_ndcg_regression_vs_blessed: float
    user_activity_edges: tuple[int, ...]
    bootstrap_samples: int
    confidence: float
    bootstrap_seed: int

    def __post_init__(self):
        # A JSON list in; EvalSettings validated the values.
        object.__setattr__(self, "user_activity_edges", tuple(self.user_activity_edges))

    @classmethod
    def from_json(cls, text: str) -> "TopKSettings":
        return cls(**json.loads(text))


def settings_json(settings) -> str:
    """The component's `eval_settings` parameter from a pipeline.configs.EvalSettings: only the
    TopKSettings fields, so that changing an RMSE rule does not rerun the top-k evaluation."""
    return json.dumps({f.name: getattr(settings, f.name)
                       for f in dataclasses.fields(TopKSettings)}, sort_keys=True)


@dataclasses.dataclass(frozen=True)
class Ratings:
    """Who rated what in one split: int64 [N] each."""

    user_ids: np.ndarray
    movie_ids: np.ndarray


def read_ratings(examples: standard_artifacts.Examples, split: str,
                 batch_size: int = 16384) -> Ratings:
    """The user_id and movie_id of every tf.Example of a split (gzipped TFRecords)."""
    pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples match {pattern}")
    spec = {k: tf.io.FixedLenFeature([], tf.int64) for k in (features.USER_ID, features.MOVIE_ID)}
    users, movies = [], []
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(batch_size):
        parsed = tf.io.parse_example(batch, spec)
        users.append(parsed[features.USER_ID].numpy())
        movies.append(parsed[features.MOVIE_ID].numpy())
    return Ratings(np.concatenate(users), np.concatenate(movies))


@dataclasses.dataclass(frozen=True)
class Rows:
    """Each user's distinct movies in ascending order, as arrays rather than Python sets (at 25M
    ratings the sets took gigabytes): row u is values[splits[u]:splits[u + 1]]."""

    values: np.ndarray  # int64 [N]
    splits: np.ndarray  # int64 [U + 1]

    def __len__(self) -> int:
        return len(self.splits) - 1

    def __getitem__(self, u: int) -> np.ndarray:
        return self.values[self.splits[u]:self.splits[u + 1]]

    def lengths(self) -> np.ndarray:
        """Movies per user; int64 [U]."""
        return np.diff(self.splits)

    def sets(self) -> list[set[int]]:
        return [set(self[u].tolist()) for u in range(len(self))]


def by_user(ratings: Ratings, users: np.ndarray) -> Rows:
    """The distinct movies of each of `users` (ascending, unique ids) in `ratings`."""
    if len(ratings.user_ids) != len(ratings.movie_ids):
        raise ValueError(f"{len(ratings.user_ids)} user ids for {len(ratings.movie_ids)} movie "
                         "ids")
    keep = np.isin(ratings.user_ids, users)
    user_ids, movie_ids = ratings.user_ids[keep], ratings.movie_ids[keep]
    order = np.lexsort((movie_ids, user_ids))
    user_ids, movie_ids = user_ids[order], movie_ids[order]
    first = np.ones(len(order), bool)  # a pair's first occurrence: sets counted it once
    first[1:] = (user_ids[1:] != user_ids[:-1]) | (movie_ids[1:] != movie_ids[:-1])
    splits = np.searchsorted(user_ids[first], users, side="right")
    return Rows(values=movie_ids[first].astype(np.int64),
                splits=np.concatenate([[0], splits]).astype(np.int64))


@dataclasses.dataclass
class EvalUsers:
    """The users the top-k metrics average over, in ascending id order (U of them)."""

    user_ids: np.ndarray  # int64 [U]
    seen: Rows  # the user's train-split movies
    relevant: list[set[int]]  # U sets: the user's eval-split movies, all relevant
    cold_start_users: int  # eval-split users without train ratings, left out

    @property
    def train_counts(self) -> np.ndarray:
        """The user's distinct train-split movies; int64 [U]."""
        return self.seen.lengths()

    def buckets(self, edges: Sequence[int]) -> np.ndarray:
        """The user-activity bucket label of each user; str [U]."""
        return np.array([bucket_label(int(n), edges) for n in self.train_counts])


def eval_users(train: Ratings, eval_: Ratings) -> EvalUsers:
    """The users with train ratings and >= 1 eval rating, with their seen and relevant movies."""
    eval_ids = np.unique(eval_.user_ids)
    users = np.intersect1d(eval_ids, train.user_ids)
    return EvalUsers(user_ids=users.astype(np.int64), seen=by_user(train, users),
                     relevant=by_user(eval_, users).sets(),
                     cold_start_users=len(eval_ids) - len(users))


def popularity_order(train_movie_ids: np.ndarray) -> np.ndarray:
    """Movie ids by number of train ratings, most first; ties by smaller id. int64 [M]."""
    movies, counts = np.unique(train_movie_ids, return_counts=True)
    # lexsort sorts by its last key first: count descending, then id ascending.
    return movies[np.lexsort((movies, -counts))]


def popularity_lists(order: np.ndarray, seen: Sequence[np.ndarray], k: int) -> np.ndarray:
    """For each user, the first k movies of `order` they have not seen (seen: each user's movies,
    ascending); int64 [U, k], PAD where fewer than k are left."""
    lists = np.full((len(seen), k), PAD, np.int64)
    for u in range(len(seen)):
        movies = seen[u]
        # At most len(movies) of the first len(movies) + k can be seen ones.
        head = order[:len(movies) + k]
        unseen = head[~np.isin(head, movies, assume_unique=True)][:k]
        lists[u, :len(unseen)] = unseen
    return lists


def recommend_lists(model_dir: str, user_ids: np.ndarray, k: int, batch_size: int = 256
                    ) -> np.ndarray:
    """The `recommend` signature's top k of a serving SavedModel for each user; int64 [U, k],
    PAD where the catalogue has fewer than k movies the user has not rated."""
    model = tf.saved_model.load(model_dir)  # kept while recommend runs: it owns the variables
    recommend = model.signatures[contract.RECOMMEND]
    lists = np.full((len(user_ids), k), PAD, np.int64)
    for start in range(0, len(user_ids), batch_size):
        batch = user_ids[start:start + batch_size]
        movie_ids = recommend(user_id=tf.constant(batch, tf.int64),
                              k=tf.fill([len(batch)], tf.constant(k, tf.int32)))[contract.MOVIE_IDS]
        movie_ids = movie_ids.numpy()[:, :k]
        lists[start:start + len(batch), :movie_ids.shape[1]] = movie_ids
    return lists


def bucket_masks(users: EvalUsers, edges: Sequence[int]) -> dict[str, np.ndarray]:
    """{OVERALL | activity bucket: which users are in it, bool [U]}, in order, non-empty only."""
    buckets = users.buckets(edges)
    masks = {OVERALL: np.ones(len(buckets), bool)}
    masks.update({b: buckets == b for b in bucket_labels(edges)})
    return {name: mask for name, mask in masks.items() if mask.any()}


def score_lists(lists: np.ndarray, per_user: dict[str, np.ndarray], users: EvalUsers, k: int,
                catalogue_size: int, edges: Sequence[int]) -> dict[str, dict[str, float]]:
    """{OVERALL | activity bucket: {metric: value}} of one model's lists ([U, k]) with their
    ranking_metrics.per_user values: the means of ranking_metrics.METRICS and coverage; buckets
    without users are left out."""
    return {name: {**ranking_metrics.mean(per_user, mask),
                   COVERAGE: ranking_metrics.coverage(lists[mask], k, catalogue_size)}
            for name, mask in bucket_masks(users, edges).items()}


def user_counts(users: EvalUsers, edges: Sequence[int]) -> dict[str, dict[str, int]]:
    """{OVERALL | activity bucket: {"users": U, "relevant": eval ratings}}, non-empty only."""
    relevant = np.array([len(r) for r in users.relevant], np.int64)
    return {name: {"users": int(mask.sum()), "relevant": int(relevant[mask].sum())}
            for name, mask in bucket_masks(users, edges).items()}


def ndcg_changes(ndcg: dict[str, np.ndarray], settings: TopKSettings
                 ) -> dict[str, bootstrap.Interval]:
    """{baseline model name: the candidate's change in mean NDCG@k against it, with its paired
    bootstrap interval}, given each model's per-user NDCG@k ({model name: float [U]}, the same
    users in the same order)."""
    return {baseline: bootstrap.mean_change(
                ndcg[results.CANDIDATE], ndcg[baseline], settings.bootstrap_samples,
                settings.confidence, settings.bootstrap_seed)
            for baseline in (results.POPULARITY, results.LATEST_BLESSED) if baseline in ndcg}


def check_rules(ndcg: dict[str, np.ndarray], settings: TopKSettings
                ) -> tuple[dict[str, bootstrap.Interval], list[results.Failure]]:
    """The intervals of the NDCG@k changes (ndcg_changes) and the failed top-k rules
    (LATEST_BLESSED absent from `ndcg`: that rule is skipped)."""
    allowed = {results.POPULARITY: settings.min_ndcg_over_popularity,
               results.LATEST_BLESSED: -settings.max_ndcg_regression_vs_blessed}
    changes = ndcg_changes(ndcg, settings)
    candidate = float(np.mean(ndcg[results.CANDIDATE]))
    failures = []
    for baseline, interval in changes.items():
        # Refused only when the whole interval is below the bound; rounding must not fail an
        # interval ending exactly at it; a NaN fails.
        if not interval.upper >= allowed[baseline] - _ROUNDING:
            failures.append(results.Failure(
                rule=results.RULES[(baseline, results.NDCG)], baseline=baseline,
                slice=results.OVERALL, metric=f"NDCG@{settings.topk_k}",
                candidate_value=candidate, baseline_value=float(np.mean(ndcg[baseline])),
                change=interval.change, allowed_change=allowed[baseline],
                lower=interval.lower, upper=interval.upper, confidence=interval.confidence,
                higher_is_better=True))
    return changes, failures


@dataclasses.dataclass
class TopKEvaluation:
    """What the TopKEvaluator wrote (METRICS_FILE)."""

    uri: str
    k: int
    catalogue_size: int
    models: list[str]  # CANDIDATE, POPULARITY and, after the first run, LATEST_BLESSED
    # model name -> OVERALL | activity bucket -> metric (METRICS, COVERAGE) -> value
    metrics: dict[str, dict[str, dict[str, float]]]
    # OVERALL | activity bucket -> {"users": ..., "relevant": ...}
    counts: dict[str, dict[str, int]]
    cold_start_users: int
    blessed: bool
    failures: list[results.Failure]
    # baseline model name -> the candidate's NDCG@k change against it, with its interval
    intervals: dict[str, bootstrap.Interval]

    def value(self, model: str, bucket: str, metric: str) -> float:
        return self.metrics.get(model, {}).get(bucket, {}).get(metric, float("nan"))

    def buckets(self) -> list[str]:
        """OVERALL, then the activity buckets with users, in order."""
        return list(self.counts)

    def to_json(self) -> str:
        fields = dataclasses.asdict(self)
        del fields["uri"]
        return json.dumps(fields, indent=2) + "\n"

    @classmethod
    def load(cls, uri: str) -> "TopKEvaluation":
        with tf.io.gfile.GFile(os.path.join(uri, METRICS_FILE)) as f:
            fields = json.load(f)
        fields["failures"] = [
            results.Failure(**{**f, "rule": results.Rule(**f["rule"]),
                               "slice": tuple(f["slice"])})
            for f in fields["failures"]]
        fields["intervals"] = {name: bootstrap.Interval(**interval)
                               for name, interval in fields["intervals"].items()}
        return cls(uri=uri, **fields)


def evaluate(train: Ratings, eval_: Ratings, model_dirs: dict[str, str],
             settings: TopKSettings, uri: str = "", batch_size: int = 256) -> TopKEvaluation:
    """Scores the popularity baseline and each SavedModel of `model_dirs` ({CANDIDATE: dir,
    optionally LATEST_BLESSED: dir}) and checks the rules."""
    k, edges = settings.topk_k, settings.user_activity_edges
    users = eval_users(train, eval_)
    if not len(users.user_ids):
        raise ValueError("no user has ratings in both the train and the eval split: top-k "
                         "recommendations cannot be evaluated")
    catalogue_size = len(np.union1d(train.movie_ids, eval_.movie_ids))
    lists = {results.POPULARITY: popularity_lists(popularity_order(train.movie_ids),
                                                  users.seen, k)}
    by_dir: dict[str, np.ndarray] = {}
    for name, model_dir in model_dirs.items():
        if model_dir not in by_dir:  # the blessed model is often the (cached) candidate
            start = time.time()
            by_dir[model_dir] = recommend_lists(model_dir, users.user_ids, k, batch_size)
            _LOG.info("recommend of %s for %d users in %.1f s", name, len(users.user_ids),
                      time.time() - start)
        lists[name] = by_dir[model_dir]
    models = [m for m in (results.CANDIDATE, results.POPULARITY, results.LATEST_BLESSED)
              if m in lists]
    per_user = {m: ranking_metrics.per_user(lists[m], users.relevant, k) for m in models}
    metrics = {m: score_lists(lists[m], per_user[m], users, k, catalogue_size, edges)
               for m in models}
    intervals, failures = check_rules({m: per_user[m][results.NDCG] for m in models}, settings)
    return TopKEvaluation(uri=uri, k=k, catalogue_size=catalogue_size, models=models,
                          metrics=metrics, counts=user_counts(users, edges),
                          cold_start_users=users.cold_start_users, blessed=not failures,
                          failures=failures, intervals=intervals)


@component
def TopKEvaluator(  # noqa: N802 - TFX component names are classes
    examples: InputArtifact[standard_artifacts.Examples],
    model: InputArtifact[standard_artifacts.Model],
    evaluation: OutputArtifact[standard_artifacts.ModelEvaluation],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
    eval_settings: Parameter[str],
    blessed_model: InputArtifact[standard_artifacts.Model] = None,
    batch_size: Parameter[int] = 256,
) -> None:
    """Top-k metrics of `model`, the popularity baseline and `blessed_model` (none on the first
    run) and the verdict of the top-k rules; `eval_settings` is settings_json(EvalSettings)."""
    memory.give_back("TopKEvaluator")  # what the Trainer and TFMA freed before it, in-process
    settings = TopKSettings.from_json(eval_settings)
    model_dirs = {results.CANDIDATE: path_utils.serving_model_path(model.uri)}
    if blessed_model is not None:
        model_dirs[results.LATEST_BLESSED] = path_utils.serving_model_path(blessed_model.uri)
    result = evaluate(read_ratings(examples, TRAIN_SPLIT), read_ratings(examples, EVAL_SPLIT),
                      model_dirs, settings, uri=evaluation.uri, batch_size=batch_size)
    tf.io.gfile.makedirs(evaluation.uri)
    with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
        f.write(result.to_json())
    # The TFX Evaluator's blessing properties: the BlessingGate reads the verdict as it reads
    # the Evaluators' (blessing_gate.evaluator_verdict).
    blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     int(result.blessed))
    blessing.set_int_custom_property(evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                     model.id)
    blessing.set_string_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    if blessed_model is not None:
        blessing.set_int_custom_property(
            evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, blessed_model.id)
    _LOG.info("Top-%d NDCG over %d users: %s%s", settings.topk_k,
              result.counts[OVERALL]["users"],
              ", ".join(f"{results.MODEL_TITLES[m]} {result.value(m, OVERALL, results.NDCG):.4f}"
                        for m in result.models),
              "".join(f"\n  {f.message()}" for f in result.failures))
