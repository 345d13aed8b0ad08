"""The retrieval stage of `recommend`: a TFRS two-tower model trained on implicit interactions.

Every training rating is an interaction ("the user chose to watch this"), whatever its value. The
query tower describes a user by the movies they rated (the user-id embedding of MF memorises a
user; the history generalises across users and serves new interactions without retraining); the
candidate tower is a movie embedding plus a popularity bias. `tfrs.tasks.Retrieval` trains them
with a full softmax: the embeddings of every trained movie (the vocabulary's, `all_movies`) are
passed as extra negatives besides the batch's positives, and the positive's own copy is removed
as an accidental hit. At MovieLens sizes (10k-90k movies) the full softmax is cheaper than
sampling and needs no log-q correction; for 1M+ movies, sample the extra negatives (see README,
"Retrieval at scale"). Trainer users of this stage: models/retrieval_training.py; the default
first stage of `recommend` is the item-item model (models/item_item.py), this one is the
alternative `RetrievalHParams` selects.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from models import base, features


def ragged_rows(values: tf.Tensor, row_splits: tf.Tensor, rows: tf.Tensor) -> tf.RaggedTensor:
    """Rows `rows` [N] of the ragged tensor given by flat `values` and `row_splits`."""
    return tf.gather(tf.RaggedTensor.from_row_splits(values, row_splits, validate=False), rows)


def exclude(scores: tf.Tensor, seen: tf.RaggedTensor) -> tf.Tensor:
    """`scores` [B, M] with each row's `seen` columns (ragged [B, None]) at -inf: movies a user
    rated in training are never recommended to them."""
    at = tf.stack([seen.value_rowids(), seen.flat_values], axis=1)
    return tf.tensor_scatter_nd_update(scores, at, tf.fill(tf.shape(seen.flat_values), -np.inf))


def with_one(query: tf.Tensor) -> tf.Tensor:
    """[query, 1]: a dot product with a MovieTower output [embedding, bias] adds the bias."""
    return tf.concat([query, tf.ones_like(query[:, :1])], axis=1)


def logits(query_tower: HistoryTower, histories: tf.RaggedTensor, candidates: tf.Tensor
           ) -> tf.Tensor:
    """Retrieval logits of users with these histories (ragged [B, None]) for candidates
    [M, dim + 1] (MovieTower outputs): float32 [B, M]. What the exported model computes, with
    the query tower and the candidates alone."""
    return tf.matmul(with_one(query_tower(histories)), candidates, transpose_b=True)


class HistoryTower(tf.keras.layers.Layer):
    """A user as the movies they rated: |H|^-1/2 * sum over H of w_j * e_j.

    Input: `histories`, ragged int64 [N, None] of movie vocabulary indices; `weights`, float32
    [total entries of histories] or None (all 1): training zeroes some entries (dropout) and
    leaves the positive movie out. `counts`: float32 [N], the |H| to normalise by (default:
    the row lengths). Output: float32 [N, dim]; zeros for an empty history (a new user).
    """

    def __init__(self, num_movies: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = self.add_weight(
            name="history_embeddings", shape=(num_movies, dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.05))

    def call(self, histories: tf.RaggedTensor, weights: tf.Tensor | None = None,
             counts: tf.Tensor | None = None) -> tf.Tensor:
        vectors = tf.gather(self.embeddings, histories.flat_values)
        if weights is not None:
            vectors *= weights[:, None]
        summed = tf.math.unsorted_segment_sum(vectors, histories.value_rowids(),
                                              num_segments=histories.nrows())
        counts = tf.cast(histories.row_lengths(), tf.float32) if counts is None else counts
        return summed * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]


class FullSoftmax(tf.keras.losses.Loss):
    """Softmax cross-entropy of each pair's positive against every trained movie.

    For tfrs.tasks.Retrieval called with candidates [the B positives; all M movies]:
    labels are the identity [B, B + M]. The batch's other positives (the first B columns off the
    diagonal) are dropped: they are among the M already, and counted twice they would push
    down the movies that are frequent in batches, the popular ones.
    """

    def __init__(self, name: str = "full_softmax"):
        super().__init__(name=name, reduction=tf.keras.losses.Reduction.SUM)

    def call(self, y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        in_batch = tf.range(tf.shape(y_pred)[1]) < tf.shape(y_pred)[0]
        others = tf.logical_and(in_batch[None, :], tf.equal(y_true, 0.0))
        logits = tf.where(others, tf.cast(y_pred.dtype.min, y_pred.dtype), y_pred)
        return tf.nn.softmax_cross_entropy_with_logits(y_true, logits)


class MovieTower(tf.keras.layers.Layer):
    """A movie as an embedding and a bias, concatenated so that a dot product with
    [query, 1] adds the bias. Input: movie vocabulary indices int64 [N] (< num_movies);
    output: float32 [N, dim + 1]."""

    def __init__(self, num_movies: int, dim: int, log_popularity: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        self.embeddings = self.add_weight(
            name="movie_embeddings", shape=(num_movies, dim),
            initializer=tf.keras.initializers.RandomNormal(stddev=0.05))
        # Starts at the log popularity: the model begins where the popularity list is.
        self.bias = self.add_weight(
            name="movie_bias", shape=(num_movies,),
            initializer=tf.keras.initializers.Constant(log_popularity))

    def call(self, movies: tf.Tensor) -> tf.Tensor:
        return tf.concat([tf.gather(self.embeddings, movies),
                          tf.gather(self.bias, movies)[:, None]], axis=1)


class RetrievalModel(tfrs.Model):
    """Two towers over the user's history and the movie, trained with tfrs.tasks.Retrieval.

    `score(histories)` gives the retrieval logits of every trained movie: float32
    [B, num_movies]. Training inputs: `user_id_xf`, `movie_id_xf` int64 [B] (vocabulary indices;
    the train split has no OOV movie); the histories it trains on are held by the model
    (`history`, ragged [num_users + OOV, None]); the exported model pools the whole train
    split's instead (see `export.ServingModule`).
    """

    def __init__(self, num_movies: int, history: tf.RaggedTensor, movie_counts: np.ndarray, *,
                 dim: int, history_dropout: float, temperature: float,
                 in_batch_negatives: bool = False, sampled_negatives: int = 0):
        super().__init__()
        self.num_movies = num_movies
        self.history_dropout = history_dropout
        self.history_values = tf.constant(history.flat_values, tf.int64)
        self.history_splits = tf.constant(history.row_splits, tf.int64)
        # (user, movie) of every history entry as one sorted key, to find a training pair's
        # entry (base.user_history sorts by user, then movie).
        self.history_keys = tf.constant(
            base.row_ids(history) * num_movies + history.flat_values.numpy(), tf.int64)
        log_pop = np.log1p(np.asarray(movie_counts, np.float64))
        # The boost serving adds to the logits: popularity_weight * log(1 + training ratings),
        # popularity_weight chosen on validation after training
        # (retrieval_training.train_retrieval).
        self.log_popularity = log_pop.astype(np.float32)
        self.popularity_weight = 0.0
        self.query_tower = HistoryTower(num_movies, dim)
        self.movie_tower = MovieTower(num_movies, dim, (log_pop - log_pop.mean()).astype(
            np.float32))
        self.all_movies = tf.range(num_movies, dtype=tf.int64)
        self.sampled_negatives = sampled_negatives
        self.temperature = temperature
        # FullSoftmax's loss (not in-batch negatives), computed directly in compute_loss.
        self.full_softmax = not in_batch_negatives
        # Top-k accuracy of the held-out positive among all movies, on validation only.
        ks = sorted({min(k, num_movies) for k in (10, 100)})
        self.index = tfrs.layers.factorized_top_k.BruteForce(k=ks[-1])
        self.task = tfrs.tasks.Retrieval(
            metrics=tfrs.metrics.FactorizedTopK(candidates=self.index, ks=ks),
            temperature=temperature, remove_accidental_hits=True,
            loss=None if in_batch_negatives else FullSoftmax())

    def histories(self, users: tf.Tensor) -> tf.RaggedTensor:
        return ragged_rows(self.history_values, self.history_splits, users)

    def query(self, histories: tf.RaggedTensor) -> tf.Tensor:
        """[query, 1] of users with these histories: float32 [B, dim + 1]."""
        return with_one(self.query_tower(histories))

    def training_query(self, users: tf.Tensor, movies: tf.Tensor) -> tf.Tensor:
        """[query, 1] of training pairs: each user's history without the pair's own movie
        (else the model learns to find the positive in its input), with history dropout.
        Each distinct user of the batch is pooled once. Output: float32 [B, dim + 1]."""
        unique, position = tf.unique(users)
        entries = ragged_rows(tf.range(tf.size(self.history_values, out_type=tf.int64)),
                              self.history_splits, unique)
        # Each history entry dropped at random (as Mult-DAE's input dropout), so the model
        # cannot lean on any single movie; the kept ones are scaled up to keep the sum's mean.
        keep = tf.nn.dropout(tf.ones_like(self.history_values, tf.float32),
                             rate=self.history_dropout) if self.history_dropout else None
        pooled_entries = entries.with_flat_values(tf.gather(self.history_values,
                                                            entries.flat_values))
        summed = self.query_tower(
            pooled_entries, None if keep is None else tf.gather(keep, entries.flat_values),
            counts=tf.ones_like(unique, tf.float32))  # the sum: normalised per pair below
        summed = tf.gather(summed, position)
        own = tf.searchsorted(self.history_keys, users * self.num_movies + movies)
        own_weight = 1.0 if keep is None else tf.gather(keep, own)[:, None]
        summed -= own_weight * tf.gather(self.query_tower.embeddings, movies)
        counts = tf.cast(tf.gather(entries.row_lengths(), position), tf.float32) - 1.0
        return with_one(summed * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None])

    def cloze_loss(self, users: tf.Tensor, keep: tf.Tensor | None = None) -> tf.Tensor:
        """The per-user ("cloze") objective: each user's history split at random into an input
        (kept with probability 1 - history_dropout) and targets (the rest), and the summed
        softmax cross-entropy over all movies of every target given the input. Input: user
        indices int64 [B]; `keep`, bool [their history entries], the split (default: drawn);
        output: the loss, a float32 scalar.

        The same task as the per-pair loss (find held-out movies of a user from the others), but
        a step scores each user against all movies once, not each of their pairs: an epoch
        costs users x movies instead of interactions x movies."""
        histories = self.histories(users)
        if keep is None:
            keep = tf.random.uniform(tf.shape(histories.flat_values)) >= self.history_dropout
        # Kept entries scaled by 1 / (1 - rate) and the sum normalised by the whole history's
        # size: in expectation the query serving computes from the whole history.
        query = self.query_tower(
            histories, tf.cast(keep, tf.float32) / (1.0 - self.history_dropout),
            counts=tf.cast(histories.row_lengths(), tf.float32))
        logits = tf.matmul(with_one(query), self.candidates(), transpose_b=True
                           ) / self.temperature
        dropped = tf.logical_not(keep)
        rows = tf.boolean_mask(histories.value_rowids(), dropped)
        targets = tf.boolean_mask(histories.flat_values, dropped)
        # sum over targets of logsumexp(row) - logit(target), without a [targets, M] tensor.
        normaliser = tf.gather(tf.reduce_logsumexp(logits, axis=1), rows)
        return tf.reduce_sum(normaliser - tf.gather_nd(logits, tf.stack([rows, targets], 1)))

    def candidates(self) -> tf.Tensor:
        """Every trained movie's [embedding, bias]: float32 [num_movies, dim + 1]."""
        return self.movie_tower(self.all_movies)

    def serving_candidates(self, popularity_weight: float | None = None) -> tf.Tensor:
        """candidates() with popularity_weight * log(1 + training ratings) added to each bias
        (default: the weight chosen on validation): what serving scores. [num_movies, dim + 1]."""
        weight = self.popularity_weight if popularity_weight is None else popularity_weight
        boost = np.zeros((self.num_movies, self.movie_tower.embeddings.shape[1] + 1), np.float32)
        boost[:, -1] = weight * self.log_popularity
        return self.candidates() + boost

    def score(self, histories: tf.RaggedTensor, popularity_weight: float | None = None
              ) -> tf.Tensor:
        """Serving's retrieval logits of users with these histories for every movie: float32
        [B, M]."""
        return logits(self.query_tower, histories, self.serving_candidates(popularity_weight))

    def update_index(self) -> None:
        """Points the top-k metric's index at the current movie embeddings."""
        self.index.index(self.candidates(), self.all_movies)

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        return self.score(self.histories(inputs[features.USER_IDX]), popularity_weight=0.0)

    @tf.autograph.experimental.do_not_convert
    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        if features.MOVIE_IDX not in inputs:  # batches of users: the cloze objective
            return self.cloze_loss(inputs[features.USER_IDX])
        users, movies = inputs[features.USER_IDX], inputs[features.MOVIE_IDX]
        # Training pairs are in the history; validation pairs are not.
        if training:
            query = self.training_query(users, movies)
        else:
            # Each distinct user once: per pair, a batch of 8192 gathered ~5 GB of histories.
            unique, position = tf.unique(users)
            query = tf.gather(self.query(self.histories(unique)), position)
        candidates = self.candidates()
        positives = tf.gather(candidates, movies)
        if self.full_softmax and not (training and self.sampled_negatives):
            # The task's loss on [positives; all movies] with the in-batch positives masked and
            # the positive's own copy removed as an accidental hit is, exactly, the softmax
            # cross-entropy of all movies' logits with the positive's index as the label:
            # computed so, a step skips the batch's B extra columns and the [B, B + M] label,
            # mask and accidental-hit tensors (docs/benchmarks.md, "Training throughput").
            logits = tf.matmul(query, candidates, transpose_b=True) / self.temperature
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(movies, logits))
        else:
            loss = self._task_loss(query, candidates, positives, movies, training)
        if training:
            return loss
        # Updated here, not by the task: with extra negatives, TFRS 0.7.3's Retrieval passes
        # the ids of every candidate where FactorizedTopK expects the positives' only.
        with tf.control_dependencies([metric.update_state(query, positives, movies)
                                      for metric in self.task.factorized_metrics]):
            return tf.identity(loss)

    def _task_loss(self, query: tf.Tensor, candidates: tf.Tensor, positives: tf.Tensor,
                   movies: tf.Tensor, training: bool) -> tf.Tensor:
        """tfrs.tasks.Retrieval's loss on [the batch's positives; the negatives]: every
        trained movie, or sampled_negatives random movies in training."""
        negatives, negative_ids = candidates, self.all_movies
        if training and self.sampled_negatives:
            # Movies drawn uniformly: every movie equally likely, so no log-q correction.
            negative_ids = tf.random.uniform([self.sampled_negatives], 0, self.num_movies,
                                             dtype=tf.int64)
            negatives = tf.gather(candidates, negative_ids)
        return self.task(query, tf.concat([positives, negatives], axis=0),
                         candidate_ids=tf.concat([movies, negative_ids], axis=0),
                         compute_metrics=False)


class IndexUpdater(tf.keras.callbacks.Callback):
    """Re-indexes the movie embeddings before each validation pass (for FactorizedTopK)."""

    def on_test_begin(self, logs=None):
        self.model.update_index()
