"""Serving signatures: the model, its vocabularies and the movie catalogue as one SavedModel.

Signatures (batch size B):
  serving_default: examples, string [B] serialized tf.Examples with int64 user_id, movie_id and,
      optionally, int64 timestamp (seconds since the epoch: when the rating is given)
      -> {"rating": float32 [B]} predicted rating in stars. With a timestamp, the rating model's
      user drift is the one at that time, as in training; without one (or a negative one), the
      drift "now", as predict_ids; a batch may mix both. Never fails on unknown ids or a missing
      timestamp: unknown ids get the cold-start prediction (the Evaluator, which sends the
      ExampleGen's examples, timestamp included, and batch scoring use this one).
  predict_ids: user_id, movie_id, int64 [B] -> {"rating": float32 [B]}, the prediction now (no
      time). A movie_id outside the catalogue or a user_id < 1 is an InvalidArgument error; a
      user never seen in training is not an error (cold start: the new-user rating of the movie
      the Trainer chose, models/new_users.py; mu + b_m where none was fitted).
  recommend: user_id int64 [B], k int32 [B] -> {"movie_ids": int64 [B, K], "ratings": float32
      [B, K], "titles": string [B, K]}, the K = max(k) best movies of the catalogue for each user
      (k of 1..contract.MAX_K, K at most the catalogue's size),
      best first, excluding the movies the user rated in training; `ratings` is the rating
      model's prediction. With a retrieval stage (two-stage): the retrieval model's top N over
      the whole catalogue, ordered by retrieval logit + rating_weight * predicted stars (then,
      for K > N, the next movies in retrieval order); a user never seen in training gets the
      retrieval model's popularity bias order. Without one: the
      catalogue ranked by predicted rating. k is per row so that TF Serving's batching can merge
      requests; each client keeps the first k of its row.
  regress: inputs, string [B] serialized tf.Examples as serving_default's (timestamp optional)
      -> {"outputs": float32 [B]}, serving_default's rating, with method name
      tensorflow/serving/regress so that TF Serving's Regress API and REST :regress work.

The names above are models/contract.py's. Transform's graph is not part of the SavedModel: the id
lookups are hash tables built from Transform's vocabularies (the same files Transform applied),
and each movie's content is Transform's output for it, stored in the catalogue; `model_inputs`
(saved with the model, not a signature) is that input path, and tests/test_transform_parity.py
checks that it gives exactly Transform's features for every vocabulary entry.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from models import base, contract, features, item_item, warmup
from models import retrieval as retrieval_stage
from models.catalogue import Catalogue
from models.hparams import ItemItemHParams, RetrievalHParams
from models.retrieval import RetrievalModel, ragged_rows


def _table(keys: np.ndarray, values: np.ndarray, default: int | bytes
           ) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(keys, tf.int64),
            tf.constant(values, tf.string if isinstance(default, bytes) else tf.int64)),
        default_value=default)


def _check(ok: tf.Tensor, message: str, bad: Callable[[], tf.Tensor]) -> tf.Operation:
    """An assertion whose data, `bad()` (the offending values), is computed only when it fails:
    computed always, it was a fifth of a one-pair predict's graph time."""
    return tf.cond(ok, tf.no_op, lambda: tf.debugging.Assert(False, [message, bad()]))


def _clip(stars: tf.Tensor) -> tf.Tensor:
    return tf.clip_by_value(stars, features.RATING_MIN, features.RATING_MAX)


class ServingModule(tf.Module):
    """Holds the model, the id tables, the catalogue and the seen movies of each user; with a
    first stage (the two-tower retrieval model, or the item-item stage), that stage of
    `recommend` and every user's history in vocabulary indices. The signatures are its
    tf.functions: callable in-process exactly as they are exported."""

    def __init__(self, model: tf.keras.Model, user_vocabulary: list[int], num_movies: int,
                 catalogue: Catalogue, history: tf.RaggedTensor,
                 two_tower: RetrievalModel | None = None,
                 first_stage: RetrievalHParams | ItemItemHParams | None = None,
                 item_stage: item_item.SparseLowRank | None = None):
        super().__init__()
        if two_tower is not None and item_stage is not None:
            raise ValueError("recommend has one first stage: the two-tower model or the "
                             "item-item stage")
        if (two_tower is None and item_stage is None) != (first_stage is None):
            raise ValueError("a first stage needs its hyper-parameters, and only then")
        self.model = model
        self.user_vocabulary = list(user_vocabulary)
        self.warmup_movie_ids = catalogue.movie_ids[:4]
        self.oov_movie = tf.constant(num_movies, tf.int64)  # the movie vocabulary's OOV index
        num_users = len(user_vocabulary)
        self.user_index = _table(np.asarray(user_vocabulary, np.int64),
                                 np.arange(num_users, dtype=np.int64), default=num_users)
        self.movie_row = _table(catalogue.movie_ids, np.arange(len(catalogue), dtype=np.int64),
                                default=-1)
        self.movie_ids = base.served_variable(catalogue.movie_ids, tf.int64)
        self.movie_idx = base.served_variable(catalogue.movie_idx, tf.int64)
        self.genres = base.served_variable(catalogue.genres, tf.float32)
        self.years = base.served_variable(catalogue.years, tf.float32)
        # A table, not a constant: a string constant of every title was copied at every call
        # (docs/benchmarks.md, "Measurements behind settings"), while recommend needs k of them.
        self.titles = _table(np.arange(len(catalogue), dtype=np.int64), catalogue.titles,
                             default=b"")
        # The catalogue as the model scores it in recommend, computed once, here.
        self.catalogue_side = {k: base.served_variable(v) for k, v in model.movie_side({
            features.MOVIE_IDX: catalogue.movie_idx, features.GENRES_XF: catalogue.genres,
            features.YEAR_XF: catalogue.years}).items()}
        # Rated movies per user index, as catalogue rows (history holds vocabulary indices).
        row_of_idx = np.full(int(catalogue.movie_idx.max()) + 1, -1, np.int64)
        row_of_idx[catalogue.movie_idx] = np.arange(len(catalogue))
        seen_rows = row_of_idx[history.flat_values.numpy()]
        self.seen_values = base.served_variable(seen_rows[seen_rows >= 0], tf.int64)
        lengths = np.bincount(base.row_ids(history)[seen_rows >= 0],
                              minlength=history.nrows().numpy())
        self.seen_splits = base.served_variable(np.concatenate([[0], np.cumsum(lengths)]), tf.int64)
        # Of the two-tower model, serving needs the query tower and the movies' vectors only (not
        # its training histories, top-k index and metrics).
        self.query_tower = None if two_tower is None else two_tower.query_tower
        self.has_first_stage = first_stage is not None
        if first_stage is not None:
            self.num_candidates = first_stage.num_candidates
            self.rating_weight = tf.constant(first_stage.rating_weight, tf.float32)
            # The whole train split's histories (the first stage trained on part of them).
            self.history_values = base.served_variable(history.flat_values, tf.int64)
            self.history_splits = base.served_variable(history.row_splits, tf.int64)
        if item_stage is not None:
            self._hold_item_stage(item_stage, catalogue, num_movies, row_of_idx)
        if two_tower is not None:
            # Catalogue rows in retrieval space; movies not trained on (OOV index) are never
            # retrieved: their rows get a bias of -inf.
            trained = catalogue.movie_idx < num_movies
            vectors = two_tower.serving_candidates().numpy()[
                np.where(trained, catalogue.movie_idx, 0)]
            vectors[~trained] = 0.0
            vectors[~trained, -1] = -np.inf
            self.retrieval_candidates = base.served_variable(vectors, tf.float32)

    def _inputs(self, users: tf.Tensor, rows: tf.Tensor, timestamps: tf.Tensor | None = None
                ) -> dict[str, tf.Tensor]:
        """Model inputs for user vocabulary indices [N] and catalogue rows [N] (-1: unknown);
        with `timestamps` [N] (negative: not given), the times the user drift is taken at."""
        known = rows >= 0
        safe = tf.maximum(rows, 0)
        inputs = {
            features.USER_IDX: users,
            features.MOVIE_IDX: tf.where(known, tf.gather(self.movie_idx, safe), self.oov_movie),
            features.GENRES_XF: tf.gather(self.genres, safe) * tf.cast(known, tf.float32)[:, None],
            features.YEAR_XF: tf.where(known, tf.gather(self.years, safe), 0.0),
        }
        if timestamps is not None:
            inputs[features.TIMESTAMP] = timestamps
        return inputs

    def _unclipped_stars(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        return features.unscale_rating(tf.reshape(self.model(inputs, training=False), [-1]))

    def _stars(self, inputs: dict[str, tf.Tensor]) -> tf.Tensor:
        return _clip(self._unclipped_stars(inputs))

    def _predict(self, user_id: tf.Tensor, movie_id: tf.Tensor,
                 timestamp: tf.Tensor | None = None) -> tf.Tensor:
        return self._stars(self._inputs(self.user_index.lookup(user_id),
                                        self.movie_row.lookup(movie_id), timestamp))

    def _parse(self, examples: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """user_id, movie_id and timestamp [B] of serialized tf.Examples; an example without a
        timestamp gets features.NO_TIMESTAMP (its prediction is "now")."""
        spec = {k: tf.io.FixedLenFeature([], tf.int64)
                for k in (contract.USER_ID, contract.MOVIE_ID)}
        spec[contract.TIMESTAMP] = tf.io.FixedLenFeature([], tf.int64,
                                                         default_value=features.NO_TIMESTAMP)
        parsed = tf.io.parse_example(examples, spec)
        return parsed[contract.USER_ID], parsed[contract.MOVIE_ID], parsed[contract.TIMESTAMP]

    # Saved with the model but not a signature (TF Serving does not see it): the features the
    # rating model gets for raw ids, for checking them against Transform's.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name=contract.USER_ID),
                                  tf.TensorSpec([None], tf.int64, name=contract.MOVIE_ID)],
                 autograph=False)
    def model_inputs(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._inputs(self.user_index.lookup(user_id), self.movie_row.lookup(movie_id))

    # autograph=False: straight-line code; converting the Keras layers costs seconds.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES)],
                 autograph=False)
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.RATING: self._predict(*self._parse(examples))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.REGRESS_INPUTS)],
                 autograph=False)
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {contract.REGRESS_OUTPUTS: self._predict(*self._parse(inputs))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name=contract.USER_ID),
                                  tf.TensorSpec([None], tf.int64, name=contract.MOVIE_ID)],
                 autograph=False)
    def predict_ids(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> dict[str, tf.Tensor]:
        rows = self.movie_row.lookup(movie_id)
        checks = [
            tf.debugging.assert_equal(
                tf.shape(user_id), tf.shape(movie_id),
                message="user_id and movie_id must have the same length"),
            _check(tf.reduce_all(rows >= 0), "movie_id not in the catalogue of the model:",
                   lambda: tf.boolean_mask(movie_id, rows < 0)),
            _check(tf.reduce_all(user_id >= 1), "user_id must be >= 1:",
                   lambda: tf.boolean_mask(user_id, user_id < 1)),
        ]
        with tf.control_dependencies(checks):
            return {contract.RATING: self._stars(self._inputs(self.user_index.lookup(user_id),
                                                              rows))}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name=contract.USER_ID),
                                  tf.TensorSpec([None], tf.int32, name=contract.K)],
                 autograph=False)
    def recommend(self, user_id: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        checks = [
            tf.debugging.assert_equal(tf.shape(user_id), tf.shape(k),
                                      message="user_id and k must have the same length"),
            tf.debugging.Assert(tf.reduce_all(k >= 1), ["k must be >= 1:", k]),
            _check(tf.reduce_all(k <= contract.MAX_K), f"k must be <= {contract.MAX_K}:",
                   lambda: tf.boolean_mask(k, k > contract.MAX_K)),
            _check(tf.reduce_all(user_id >= 1), "user_id must be >= 1:",
                   lambda: tf.boolean_mask(user_id, user_id < 1)),
        ]
        with tf.control_dependencies(checks):
            users = self.user_index.lookup(user_id)
        count = tf.minimum(tf.reduce_max(k), tf.shape(self.movie_ids)[0])
        rows, stars = (self._retrieve_and_rank(users, count) if self.has_first_stage
                       else self._rank_by_rating(users, count))
        return {contract.MOVIE_IDS: tf.gather(self.movie_ids, rows),
                contract.RATINGS: _clip(stars),
                contract.TITLES: self.titles.lookup(tf.cast(rows, tf.int64))}

    def _hold_item_stage(self, stage: item_item.SparseLowRank, catalogue: Catalogue,
                         num_movies: int, row_of_idx: np.ndarray) -> None:
        """The item-item stage as served arrays whose columns are catalogue rows: neighbour lists
        and history factors per vocabulary index (what histories hold), movie factors and a
        mask (-inf: not trained on, never recommended) per catalogue row, plus a popularity
        tie-break far below any score: a new user's empty history scores every movie 0."""
        neighbours = row_of_idx[stage.lists.neighbours]
        self.item_neighbours = base.served_variable(np.maximum(neighbours, 0), tf.int32)
        self.item_weights = base.served_variable(
            np.where(neighbours >= 0, stage.lists.weights, 0.0), tf.float32)
        self.item_history_factors = base.served_variable(stage.history_factors, tf.float32)
        trained = catalogue.movie_idx < num_movies
        idx = np.where(trained, catalogue.movie_idx, 0)
        self.item_movie_factors = base.served_variable(
            np.where(trained[:, None], stage.movie_factors[idx], 0.0), tf.float32)
        counts = np.bincount(self.history_values.numpy(), minlength=num_movies)[idx]
        prior = item_item.TIE_BREAK * np.log1p(counts) / max(np.log1p(counts).max(), 1.0)
        self.item_prior = base.served_variable(np.where(trained, prior, -np.inf), tf.float32)

    def _first_stage_scores(self, histories: tf.RaggedTensor) -> tf.Tensor:
        """Scores [B, catalogue rows] of users' training histories (ragged [B, None] of
        vocabulary indices) by the first stage: retrieval logits or item-item scores."""
        if self.query_tower is not None:
            return retrieval_stage.logits(self.query_tower, histories,
                                          self.retrieval_candidates)
        scores = item_item.scores_tf(self.item_neighbours, self.item_weights,
                                     histories.to_tensor(-1),
                                     num_columns=tf.shape(self.item_prior)[0],
                                     history_factors=self.item_history_factors,
                                     movie_factors=self.item_movie_factors)
        return scores + self.item_prior

    def _unseen(self, users: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
        """Scores [B, M] of catalogue rows with the movies each user rated in training at -inf
        (OOV users have none)."""
        return retrieval_stage.exclude(scores,
                                       ragged_rows(self.seen_values, self.seen_splits, users))

    def _rank_by_rating(self, users: tf.Tensor, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The catalogue rows [B, count] of the best predicted ratings, and those (unclipped)."""
        # Ranked by the unclipped score: clipped, every movie above 5 stars would tie at 5.0.
        scores = features.unscale_rating(self.model.score_catalogue(users, self.catalogue_side))
        top = tf.math.top_k(self._unseen(users, scores), k=count)
        return top.indices, top.values

    def _retrieve_and_rank(self, users: tf.Tensor, count: tf.Tensor
                           ) -> tuple[tf.Tensor, tf.Tensor]:
        """Two stages: the first stage's top N catalogue rows, ordered by first-stage score +
        rating_weight * predicted stars, then (when count > N) the next ones in retrieval order,
        so that a row's first k never depend on the K it was batched with. Returns rows
        [B, count] and their predicted stars."""
        histories = ragged_rows(self.history_values, self.history_splits, users)
        logits = self._unseen(users, self._first_stage_scores(histories))
        n = tf.minimum(self.num_candidates, tf.shape(self.movie_ids)[0])
        retrieved = tf.math.top_k(logits, k=tf.maximum(count, n))
        batch, width = tf.shape(users)[0], tf.shape(retrieved.indices)[1]
        stars = tf.reshape(self._unclipped_stars(self._inputs(
            tf.repeat(users, width), tf.reshape(retrieved.indices, [-1]))), [batch, width])
        ranked = tf.math.top_k(retrieved.values[:, :n] + self.rating_weight * stars[:, :n],
                               k=n).indices
        order = tf.concat([ranked, tf.broadcast_to(tf.range(n, width), [batch, width - n])],
                          axis=1)[:, :count]
        return (tf.gather(retrieved.indices, order, batch_dims=1),
                tf.gather(stars, order, batch_dims=1))


def _mark_regress_signature(export_dir: str) -> None:
    """tf.saved_model.save writes every signature as a Predict one; TF Serving's Regress API
    requires the regress method name on the signature it calls."""
    path = tf.io.gfile.join(export_dir, "saved_model.pb")
    proto = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(path, "rb") as f:
        proto.ParseFromString(f.read())
    for meta_graph in proto.meta_graphs:
        meta_graph.signature_def[contract.REGRESS].method_name = contract.REGRESS_METHOD
    # Deterministic: maps (signatures, function attributes) in key order, so that the same model
    # gives the same bytes and the Pusher recognises it as the version already served.
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(proto.SerializeToString(deterministic=True))


def export_serving_model(module: ServingModule, export_dir: str) -> None:
    """Saves the serving SavedModel with its signatures and warmup requests."""
    tf.saved_model.save(module, export_dir, signatures={
        contract.SERVING_DEFAULT: module.serve_examples,
        contract.PREDICT_IDS: module.predict_ids,
        contract.RECOMMEND: module.recommend,
        contract.REGRESS: module.regress,
    })
    _mark_regress_signature(export_dir)
    # Replayed by TF Serving before a version serves; ids the model knows, so every one succeeds.
    warmup.write_warmup_requests(export_dir, user_ids=module.user_vocabulary[:4],
                                 movie_ids=module.warmup_movie_ids)
