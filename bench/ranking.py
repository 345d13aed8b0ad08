"""Top-k recommendations: our exported `recommend` next to popularity, implicit and SVD rankings.

Each user's 10 best movies not rated in training, scored against the movies they rated in the
held-out split, on ml-latest-small split two ways, over several seeds; writes
bench/results/ranking.json and the "ranking" section of docs/benchmarks.md (issue 11).

    .venv/bin/python -m bench.ranking --data-dir DIR          # everything, 3 seeds
    .venv/bin/python -m bench.ranking --protocols strat75 --seeds 0 --models popularity,als \\
        --no-write                                             # one quick experiment
    make bench-ranking DATA_DIR=DIR BENCH_ARGS=...             # installs implicit, runs it

Protocols (ratings.csv in file order):
  rand80   np.random.seed(7); mask = np.random.rand(n) < 0.8 trains (bench/accuracy.py's rand80).
           The split is fixed; the seeds vary model initialisation (and the validation split).
  strat75  Microsoft Recommenders' python_stratified_split(ratio=0.75, seed=seed): each user's
           ratings shuffled with the seed, the first 75% train, the rest test. The seed changes
           the split too.

Relevance (binary): table "all" counts every held-out rating of the user as relevant, table
"liked" only held-out ratings >= 4 stars. Users evaluated: those with training ratings and at
least one relevant held-out movie. Every recommender excludes the movies the user rated in
training. Metrics: models/ranking_metrics.py at k = 10; coverage is over the distinct movies of
the training split.

EASE (dense, every training movie) and the item-item stage of models/item_item.py (EDLAE on the
catalogue's head, pruned to N neighbours a movie) are tuned the same way over GRIDS, one solve per
(l2, dropout). --item-item-scale FOLDER... also times the item-item fit at its first chosen
params on those ratings folders (e.g. a bench.synthetic 1M set) and its TF scoring latency.

implicit's models (ALS, BPR, item kNN) are tuned on a validation split cut from the training
split by the same protocol (rand 80/20 or per-user 75/25 of train, seeded), on validation NDCG@10
under each table's relevance, then refitted on the whole training split. Every rating is one
interaction of confidence 1 (ALS scales it by alpha).

Our rows rank with the recommend signature of the module trainer.fit_serving_module returns (what
the Trainer exports): "two_stage" with configs.HPARAMS (its first stage, item-item or two-tower
retrieval, then the rating model), "ours" with the same rating model and no first stage (it
ranks the whole catalogue; see ours_hparams).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import itertools
import json
import os
import platform
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# implicit's ALS and BPR run their own threads: a BLAS thread pool under them only slows them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from bench import docs  # noqa: E402
from models import ranking_metrics  # noqa: E402
from models.ranking_metrics import PAD  # noqa: E402

# bench.accuracy (split, encode, load, SVD_SETTINGS) and TensorFlow are imported where they are
# used, so that the protocol and popularity code (and its unit test) load in a fraction of a
# second.

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "ranking.json"
K = 10
PROTOCOLS = ("rand80", "strat75")
STRAT_RATIO = 0.75
RAND_RATIO = 0.8
# Minimum held-out rating of a relevant movie, per table.
RELEVANCE = {"all": 0.0, "liked": 4.0}
RELEVANCE_LABELS = {"all": "every held-out rating is relevant",
                    "liked": "held-out ratings >= 4 stars are relevant"}
MODELS = ("popularity", "als", "bpr", "knn", "svd", "ease", "item_item", "ours", "two_stage")
MODEL_LABELS = {
    "popularity": "most rated in training",
    "als": "implicit ALS (tuned)",
    "bpr": "implicit BPR (tuned)",
    "knn": "implicit item kNN (tuned)",
    "svd": "Surprise SVD (accuracy.py settings), by predicted rating",
    "ease": "EASE (Steck 2019, dense, tuned)",
    "item_item": "item-item: EDLAE pruned to N neighbours (models/item_item.py, tuned)",
    "ours": "ours, rating-only: the rating model ranks the catalogue",
    "two_stage": "ours, as the pipeline trains it: a first stage, then its score + rating",
}
TUNED = ("als", "bpr", "knn", "ease", "item_item")
# Tuned by bench code of ours (models/item_item.py), not implicit's: one solve per point of
# SOLVE_KEYS, every prune setting of the grid evaluated on it.
ITEM_MODELS = ("ease", "item_item")
SOLVE_KEYS = ("l2", "dropout")
# The grids, widened where its best points sat on an edge of a first run (ALS:
# regularization 1 and alpha 1; BPR: the fewest iterations and the lowest learning rate). ALS
# still picks regularization 10 and alpha 1 everywhere; beyond them (regularization 30 and 100,
# alpha 0.5, 256 factors) seed 0's validation NDCG@10 was no better on either protocol. A grid
# of 128-512 factors x regularization 3-30 x alpha 0.5-2 picked 512 / 10 / 1 on rand80 seed 0
# (test NDCG@10 0.3627; the table's 128 factors 0.3592, 3 seeds) at 7 minutes a split: not kept
# (docs/benchmarks.md, "Side features").
GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    "als": {"factors": (64, 128), "regularization": (0.01, 0.1, 1.0, 10.0),
            "alpha": (1.0, 3.0, 10.0, 40.0), "iterations": (15, 30)},
    "bpr": {"factors": (32, 64), "learning_rate": (0.003, 0.01, 0.05),
            "regularization": (0.001, 0.01), "iterations": (30, 100, 300)},
    "knn": {"K": (20, 50, 100, 200), "weighting": ("cosine", "bm25")},
    # EASE: a first run on rand80 and strat75 seed 0 over {25, ..., 1600} chose 100-400; the
    # three seeds chose 800 for strat75's "liked" once, so the grid goes to 1600.
    "ease": {"l2": (50.0, 200.0, 400.0, 800.0, 1600.0)},
    # item-item: a first run over l2 {50, 100, 200, 400} x dropout {0, 0.1, 0.25, 0.5} x
    # n {50, 200, 1000} (seed 0) chose l2 200-400, n 200-1000; dropout did not matter (<= 0.001).
    "item_item": {"l2": (200.0, 400.0, 800.0), "dropout": (0.0, 0.25), "n": (200, 1000)},
}
GRID_NAMES = {"als": "ALS", "bpr": "BPR", "knn": "kNN", "ease": "EASE", "item_item": "item-item"}
# Users per recommend call: a rating model without a catalogue scorer of its own (neural) runs on
# users x catalogue pairs, ~10k movies each.
RECOMMEND_BATCH = 32

# Raw user ids [U] -> raw movie ids [U, K], best first, PAD where a list is short.
Recommender = Callable[[np.ndarray], np.ndarray]


# --- Protocols ---------------------------------------------------------------------------------

def stratified_split(ratings: pd.DataFrame, ratio: float, seed: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Microsoft Recommenders' python_stratified_split: each user's ratings in a seeded random
    order, those of rank / count <= ratio train (floor(ratio * count) of them), the rest test.
    Both parts keep the input's row order."""
    order = np.random.RandomState(seed).rand(len(ratings))  # = np.random.seed(seed); rand(n)
    keyed = pd.DataFrame({"user": ratings.userId.to_numpy(), "order": order})
    keyed = keyed.sort_values(["user", "order"])
    groups = keyed.groupby("user")
    rank = (groups.cumcount() + 1) / groups.user.transform("count")
    is_train = (rank <= ratio).sort_index().to_numpy()
    return ratings[is_train], ratings[~is_train]


def random_split(ratings: pd.DataFrame, ratio: float, seed: int
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded uniform split, each rating training with probability `ratio`."""
    is_train = np.random.RandomState(seed).rand(len(ratings)) < ratio
    return ratings[is_train], ratings[~is_train]


def split(ratings: pd.DataFrame, protocol: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, test) of a protocol; rand80 ignores the seed (its split is fixed)."""
    if protocol == "rand80":
        from bench import accuracy

        return accuracy.split(ratings, "rand80")
    if protocol == "strat75":
        return stratified_split(ratings, STRAT_RATIO, seed)
    raise ValueError(f"unknown protocol {protocol!r}")


def validation_split(train: pd.DataFrame, protocol: str, seed: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The protocol applied inside the training split, for tuning: (fit, validation)."""
    if protocol == "rand80":
        return random_split(train, RAND_RATIO, seed)
    if protocol == "strat75":
        return stratified_split(train, STRAT_RATIO, seed)
    raise ValueError(f"unknown protocol {protocol!r}")


def relevant_sets(train: pd.DataFrame, test: pd.DataFrame, min_rating: float
                  ) -> tuple[np.ndarray, list[set[int]]]:
    """(users [U], relevant movie ids of each): the users with training ratings and at least one
    held-out rating >= min_rating, sorted by id."""
    held = test[(test.rating >= min_rating) & test.userId.isin(train.userId)]
    grouped = held.groupby("userId").movieId
    return grouped.size().index.to_numpy(np.int64), [set(g) for _, g in grouped]


# --- Training data as a matrix, and top-k from scores --------------------------------------------

@dataclasses.dataclass(frozen=True)
class Interactions:
    """The training ratings as a binary user x movie CSR matrix (rows and columns sorted ids)."""

    users: np.ndarray  # int64 [num_users] raw user id of each row
    movies: np.ndarray  # int64 [num_movies] raw movie id of each column
    matrix: sp.csr_matrix  # float32 [num_users, num_movies], 1.0 where the user rated the movie

    @classmethod
    def from_ratings(cls, ratings: pd.DataFrame) -> Interactions:
        users, rows = np.unique(ratings.userId.to_numpy(np.int64), return_inverse=True)
        movies, cols = np.unique(ratings.movieId.to_numpy(np.int64), return_inverse=True)
        matrix = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                               shape=(len(users), len(movies)))
        matrix.data[:] = 1.0  # duplicate pairs (none in MovieLens) would have summed
        return cls(users, movies, matrix)

    def rows(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each raw user id; every one must have training ratings."""
        rows = np.searchsorted(self.users, user_ids)
        if not np.array_equal(self.users[np.minimum(rows, len(self.users) - 1)], user_ids):
            raise ValueError("recommendations asked for users without training ratings")
        return rows

    def to_movie_ids(self, columns: np.ndarray) -> np.ndarray:
        """Raw movie ids of column indices, PAD staying PAD."""
        return np.where(columns == PAD, PAD, self.movies[np.maximum(columns, 0)])


def top_k_unseen(scores: np.ndarray, seen: sp.csr_matrix, k: int) -> np.ndarray:
    """Column indices [U, k] of the k best scores of each row [U, M] that `seen` [U, M] lacks,
    best first, ties to the lower column (a stable sort); PAD where fewer remain."""
    scores = np.array(scores, np.float64)
    scores[seen.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, PAD)
    return np.pad(top, ((0, 0), (0, k - top.shape[1])), constant_values=PAD)


def unseen_lists(columns: np.ndarray, seen: sp.csr_matrix, valid: np.ndarray, k: int
                 ) -> np.ndarray:
    """Keeps, in order, the columns [U, N] that are valid (bool [U, N]) and not seen; PAD-padded
    to k. For library results, which may fill short lists with seen or placeholder items."""
    out = np.full((len(columns), k), PAD, np.int64)
    for u, (row, ok) in enumerate(zip(columns, valid, strict=True)):
        liked = set(seen.indices[seen.indptr[u]:seen.indptr[u + 1]])
        kept = [c for c, good in zip(row, ok, strict=True) if good and c != PAD and c not in liked]
        out[u, :len(kept[:k])] = kept[:k]
    return out


# --- Recommenders ------------------------------------------------------------------------------

def fit_popularity(train: pd.DataFrame, seed: int, params: dict[str, Any]) -> Recommender:
    """The k most-rated training movies the user has not rated (ties: lower movie id)."""
    data = Interactions.from_ratings(train)
    counts = np.asarray(data.matrix.sum(axis=0)).reshape(-1)

    def recommend(user_ids: np.ndarray) -> np.ndarray:
        rows = data.rows(user_ids)
        scores = np.broadcast_to(counts, (len(rows), len(counts)))
        return data.to_movie_ids(top_k_unseen(scores, data.matrix[rows], K))

    return recommend


def implicit_model(name: str, params: dict[str, Any], seed: int) -> Any:
    """An implicit.cpu model; one thread, seeded, so that a seed reproduces its run."""
    if name == "als":
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(**params, random_state=seed, num_threads=1)
    if name == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(**params, random_state=seed, num_threads=1)
    if name == "knn":
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        factory = BM25Recommender if params["weighting"] == "bm25" else CosineRecommender
        return factory(K=params["K"], num_threads=1)
    raise ValueError(f"unknown implicit model {name!r}")


def fit_implicit(name: str, train: pd.DataFrame, seed: int, params: dict[str, Any]
                 ) -> Recommender:
    """implicit's model `name` fitted on the binary training matrix; its batch recommend with
    filter_already_liked_items (short lists it pads with seen items or -1 become PAD)."""
    data = Interactions.from_ratings(train)
    model = implicit_model(name, params, seed)
    with warnings.catch_warnings():
        # The kNN models transpose our CSR input themselves and then warn that it is not CSR.
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(data.matrix, show_progress=False)

    def recommend(user_ids: np.ndarray) -> np.ndarray:
        rows = data.rows(user_ids)
        columns, scores = model.recommend(rows, data.matrix[rows], N=K,
                                          filter_already_liked_items=True)
        valid = np.asarray(scores) > -np.finfo(np.float32).max
        return data.to_movie_ids(unseen_lists(np.asarray(columns), data.matrix[rows], valid, K))

    return recommend


def item_recommender(data: Interactions, scores_of: Callable[[sp.csr_matrix], np.ndarray]
                     ) -> Recommender:
    """Top K unseen of scores_of(the users' training rows [U, M]) -> scores [U, M]."""
    def recommend(user_ids: np.ndarray) -> np.ndarray:
        rows = data.rows(user_ids)
        seen = data.matrix[rows]
        return data.to_movie_ids(top_k_unseen(scores_of(seen), seen, K))

    return recommend


def item_solutions(name: str, data: Interactions, params: Sequence[dict[str, Any]]):
    """(params, recommender) for each point of `params` of an ITEM_MODELS model: one solve per
    distinct (l2, dropout), each pruning of it reusing the solve."""
    from models import item_item

    by_solve: dict[tuple, list[dict[str, Any]]] = {}
    for p in params:
        by_solve.setdefault(tuple(p.get(k, 0.0) for k in SOLVE_KEYS), []).append(p)
    for (l2, dropout), points in by_solve.items():
        b = item_item.dense_fit(data.matrix, l2, dropout)
        for p in points:
            if name == "ease":
                yield p, item_recommender(data, lambda seen, b=b: np.asarray(seen @ b))
                continue
            model = item_item.prune(b, np.arange(b.shape[0]), b.shape[0], p["n"])
            yield p, item_recommender(data, lambda seen, m=model: item_item.score_numpy(m, seen))
        del b


def fit_item(name: str, train: pd.DataFrame, seed: int, params: dict[str, Any]) -> Recommender:
    """EASE (dense) or the pruned item-item stage fitted on the binary training matrix."""
    return next(item_solutions(name, Interactions.from_ratings(train), [params]))[1]


def fit_svd(train: pd.DataFrame, seed: int, params: dict[str, Any]) -> Recommender:
    """Surprise SVD ranking the training movies by estimated rating, mu + b_u + b_i + q_i.p_u,
    unclipped (as our recommend: clipped, every estimate above 5 stars would tie)."""
    import surprise

    from bench import accuracy

    reader = surprise.Reader(rating_scale=(0.5, 5.0))
    trainset = surprise.Dataset.load_from_df(
        train[["userId", "movieId", "rating"]], reader).build_full_trainset()
    algo = surprise.SVD(random_state=seed, **accuracy.SVD_SETTINGS)
    algo.fit(trainset)
    data = Interactions.from_ratings(train)
    # Surprise's inner ids to our sorted rows and columns.
    user_inner = [trainset.to_inner_uid(u) for u in data.users]
    item_inner = [trainset.to_inner_iid(m) for m in data.movies]
    pu, bu = algo.pu[user_inner], algo.bu[user_inner]
    qi, bi = algo.qi[item_inner], algo.bi[item_inner]

    def recommend(user_ids: np.ndarray) -> np.ndarray:
        rows = data.rows(user_ids)
        scores = trainset.global_mean + bu[rows, None] + bi[None, :] + pu[rows] @ qi.T
        return data.to_movie_ids(top_k_unseen(scores, data.matrix[rows], K))

    return recommend


def encoded_catalogue(train: pd.DataFrame, movies: pd.DataFrame):
    """(encoded train columns, user vocabulary, movie vocabulary size, Catalogue of every movie
    of movies.csv): bench.accuracy.encode's Transform mirror applied to the train split and to
    one row per movie, so movies without training ratings get the OOV index."""
    from bench import accuracy
    from models import features
    from models.catalogue import Catalogue

    movies = movies.sort_values("movieId")
    every_movie = pd.DataFrame({"userId": -1, "movieId": movies.movieId.to_numpy(),
                                "rating": features.RATING_MIN, "timestamp": 0})
    encoded = accuracy.encode(train, every_movie, movies)
    catalogue = Catalogue(
        movie_ids=movies.movieId.to_numpy(np.int64),
        movie_idx=encoded.test[features.MOVIE_IDX],
        genres=encoded.test[features.GENRES_XF],
        years=encoded.test[features.YEAR_XF],
        titles=np.array([t.encode() for t in movies.title], object))
    user_vocabulary = [int(u) for u in sorted(train.userId.unique())]
    return encoded.train, user_vocabulary, encoded.num_movies, catalogue


def folder_interactions(folder: Path):
    """Every rating of a folder's ratings.csv as an interaction, indexed as the Trainer's training
    split is (encoded_catalogue): ({USER_IDX, MOVIE_IDX: int [N]}, users, movie vocabulary size,
    Catalogue of movies.csv). For the item-item benches."""
    from models import features

    columns, user_vocabulary, num_movies, movies = encoded_catalogue(
        pd.read_csv(folder / "ratings.csv"), pd.read_csv(folder / "movies.csv"))
    pairs = {c: columns[c] for c in (features.USER_IDX, features.MOVIE_IDX)}
    return pairs, len(user_vocabulary), num_movies, movies


def _ours(hp, train: pd.DataFrame, movies: pd.DataFrame):
    """The ServingModule the Trainer exports for `hp` trained on `train`
    (trainer.fit_serving_module, as run_fn calls it): rows 'ours' and 'two_stage' both rank with
    its recommend signature."""
    from models import trainer

    columns, user_vocabulary, num_movies, catalogue = encoded_catalogue(train, movies)
    return trainer.fit_serving_module(hp, columns, user_vocabulary, num_movies, catalogue,
                                      verbose=0)


def serving_recommender(module) -> Recommender:
    """The exported signature's ranking: module.recommend(user_id, k) in batches."""
    import tensorflow as tf

    from models import contract

    def recommend(user_ids: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(user_ids), RECOMMEND_BATCH):
            batch = user_ids[start:start + RECOMMEND_BATCH]
            result = module.recommend(user_id=tf.constant(batch, tf.int64),
                                      k=tf.fill([len(batch)], K))
            out.append(result[contract.MOVIE_IDS].numpy())
        return np.concatenate(out)

    return recommend


def ours_hparams(model: str, seed: int):
    """The HParams of our rows, seeded: 'two_stage' is the pipeline's (configs.HPARAMS: its
    item-item stage or retrieval model, the default RetrievalHParams if it has neither), 'ours'
    the same rating model without a first stage (it ranks the whole catalogue by predicted
    rating)."""
    from models.hparams import RetrievalHParams
    from pipeline import configs

    hp = dataclasses.replace(configs.HPARAMS, seed=seed)
    if model == "ours":
        return dataclasses.replace(hp, retrieval=None, item_item=None)
    if hp.item_item is not None:
        return dataclasses.replace(hp, item_item=dataclasses.replace(hp.item_item, seed=seed))
    retrieval = hp.retrieval or RetrievalHParams()
    return dataclasses.replace(hp, retrieval=dataclasses.replace(retrieval, seed=seed))


def two_stage_source() -> str:
    """Where the two-stage row's retrieval HParams come from, for the doc."""
    from pipeline import configs

    if configs.HPARAMS.item_item is not None:
        return "the item-item stage of configs.HPARAMS"
    if configs.HPARAMS.retrieval is not None:
        return "the retrieval stage of configs.HPARAMS"
    return "RetrievalHParams() (the defaults of models/hparams.py)"


def fit_ours(model: str, train: pd.DataFrame, movies: pd.DataFrame, seed: int) -> Recommender:
    return serving_recommender(_ours(ours_hparams(model, seed), train, movies))


# --- Tuning and evaluation ---------------------------------------------------------------------

def grid(name: str) -> list[dict[str, Any]]:
    """Every combination of GRIDS[name]."""
    keys = list(GRIDS[name])
    return [dict(zip(keys, values, strict=True))
            for values in itertools.product(*(GRIDS[name][k] for k in keys))]


def evaluate(recommend: Recommender, train: pd.DataFrame, test: pd.DataFrame,
             catalogue_size: int) -> dict[str, dict[str, float]]:
    """Metrics at K under each relevance of RELEVANCE; recommendations computed once for the
    users of the widest relevance ("all" contains every other table's users)."""
    users, _ = relevant_sets(train, test, min(RELEVANCE.values()))
    lists = dict(zip(users, recommend(users), strict=True)) if len(users) else {}
    results = {}
    for relevance, min_rating in RELEVANCE.items():
        evaluated, relevant = relevant_sets(train, test, min_rating)
        recommended = np.array([lists[u] for u in evaluated]).reshape(len(evaluated), K)
        results[relevance] = {**ranking_metrics.evaluate(recommended, relevant, K,
                                                         catalogue_size),
                              "users": len(evaluated)}
    return results


def tune(name: str, train: pd.DataFrame, protocol: str, seed: int
         ) -> dict[str, dict[str, Any]]:
    """Validation NDCG@K of each grid point; the best per relevance: {relevance: {"params",
    "validation_ndcg"}}."""
    fit, held = validation_split(train, protocol, seed)
    catalogue_size = fit.movieId.nunique()
    if name in ITEM_MODELS:
        candidates = item_solutions(name, Interactions.from_ratings(fit), grid(name))
    else:
        candidates = ((p, fit_implicit(name, fit, seed, p)) for p in grid(name))
    scored = []
    for params, recommend in candidates:
        metrics = evaluate(recommend, fit, held, catalogue_size)
        scored.append((params, {r: m["ndcg"] for r, m in metrics.items()}))
    best = {}
    for relevance in RELEVANCE:
        params, ndcg = max(scored, key=lambda s, r=relevance: s[1][r])
        best[relevance] = {"params": params, "validation_ndcg": ndcg[relevance],
                           "grid_ndcg": [[p, n[relevance]] for p, n in scored]}
    return best


def run_model(model: str, train: pd.DataFrame, test: pd.DataFrame, movies: pd.DataFrame,
              protocol: str, seed: int) -> list[dict[str, Any]]:
    """One model on one split: a run record per relevance (metrics, train seconds, params)."""
    catalogue_size = train.movieId.nunique()
    if model in TUNED:
        start = time.perf_counter()
        best = tune(model, train, protocol, seed)
        tune_seconds = time.perf_counter() - start
        fitted: dict[str, tuple[dict, float]] = {}  # one refit per distinct chosen params
        runs = []
        for relevance, choice in best.items():
            key = json.dumps(choice["params"], sort_keys=True)
            if key not in fitted:
                start = time.perf_counter()
                fitter = fit_item if model in ITEM_MODELS else fit_implicit
                recommend = fitter(model, train, seed, choice["params"])
                seconds = time.perf_counter() - start
                fitted[key] = (evaluate(recommend, train, test, catalogue_size), seconds)
            metrics, seconds = fitted[key]
            runs.append({"relevance": relevance, **metrics[relevance], "train_seconds": seconds,
                         "tune_seconds": tune_seconds, **choice})
        return runs
    start = time.perf_counter()
    if model in ("ours", "two_stage"):
        recommend = fit_ours(model, train, movies, seed)
    else:
        recommend = {"popularity": fit_popularity, "svd": fit_svd}[model](train, seed, {})
    seconds = time.perf_counter() - start
    metrics = evaluate(recommend, train, test, catalogue_size)
    return [{"relevance": r, **m, "train_seconds": seconds} for r, m in metrics.items()]


# --- The item-item stage's cost: fit time, size, scoring latency ----------------------------------

SCALE_MOVIES = 87_000  # ml-32m's catalogue, for the latency micro-benchmark
SCALE_HISTORY = (20, 100, 500)  # history lengths timed (ml-latest-small: median 70 ratings)


def scoring_latency(neighbours: np.ndarray, weights: np.ndarray, history_length: int,
                    repeats: int = 200, seed: int = 0) -> dict[str, float]:
    """p50 and p90 ms of one user's scores_tf + top-10 (a tf.function, batch 1, history of
    `history_length` random movies), after a warm-up."""
    import tensorflow as tf

    from models import item_item

    neighbours_t, weights_t = tf.constant(neighbours), tf.constant(weights)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int64)])
    def top(history):
        scores = item_item.scores_tf(neighbours_t, weights_t, history)
        return tf.math.top_k(scores, K).indices

    rng = np.random.default_rng(seed)
    histories = [rng.choice(len(neighbours), history_length, replace=False)[None]
                 for _ in range(repeats)]
    return call_latency(top, histories, warmup=10)


def call_latency(call: Callable, histories: list[np.ndarray], warmup: int) -> dict[str, float]:
    """p50 and p90 ms of call(history) -> a tensor, over `histories`, after calling it on the
    first `warmup` of them."""
    import tensorflow as tf

    for h in histories[:warmup]:
        call(tf.constant(h)).numpy()
    times = []
    for h in histories:
        start = time.perf_counter()
        call(tf.constant(h)).numpy()
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p90_ms": float(np.percentile(times, 90))}


def item_item_scale(params: dict[str, Any], data_dirs: dict[str, Path]) -> dict[str, Any]:
    """The item-item stage at `params` fitted on each ratings.csv of data_dirs (its fit time,
    head size, served bytes, scoring latency), and the scoring latency of random neighbour lists
    of the same N over SCALE_MOVIES movies."""
    from models import item_item

    out: dict[str, Any] = {"params": params, "fits": {}, "latency": {}}
    for name, folder in data_dirs.items():
        ratings = pd.read_csv(folder / "ratings.csv", usecols=["userId", "movieId"])
        data = Interactions.from_ratings(ratings.assign(rating=1.0))
        start = time.perf_counter()
        model = item_item.fit(data.matrix, params["l2"], params.get("dropout", 0.0),
                              params["n"])
        seconds = time.perf_counter() - start
        counts = np.asarray(data.matrix.sum(axis=0)).reshape(-1)
        head = item_item.head_movies(counts)
        out["fits"][name] = {"ratings": len(ratings), "movies": data.matrix.shape[1],
                             "head": len(head), "fit_seconds": seconds,
                             "bytes": model.nbytes, "load_average": os.getloadavg()}
        out["latency"][name] = {length: scoring_latency(model.neighbours, model.weights, length)
                                for length in SCALE_HISTORY if length < data.matrix.shape[1]}
        print(f"{name}: {out['fits'][name]} {out['latency'][name]}", flush=True)
    rng = np.random.default_rng(0)
    n = params["n"]
    neighbours = rng.integers(0, SCALE_MOVIES, (SCALE_MOVIES, n), dtype=np.int32)
    weights = rng.normal(size=(SCALE_MOVIES, n)).astype(np.float32)
    name = f"random {SCALE_MOVIES} movies"
    out["latency"][name] = {length: scoring_latency(neighbours, weights, length)
                            for length in SCALE_HISTORY}
    out["bytes_87k"] = int(neighbours.nbytes + weights.nbytes)
    out["load_average_end"] = os.getloadavg()
    print(f"{name}: {out['latency'][name]}", flush=True)
    return out


# --- Reporting ---------------------------------------------------------------------------------

SUMMARY_KEYS = (*ranking_metrics.METRICS, "coverage", "train_seconds")


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and spread (max - min) over seeds per relevance, protocol and model."""
    rows = []
    for relevance, protocol, model in itertools.product(RELEVANCE, PROTOCOLS, MODELS):
        mine = [r for r in runs if (r["relevance"], r["protocol"], r["model"])
                == (relevance, protocol, model)]
        if not mine:
            continue
        row = {"relevance": relevance, "protocol": protocol, "model": model,
               "seeds": len(mine), "users": int(np.mean([r["users"] for r in mine]))}
        for key in SUMMARY_KEYS:
            values = np.array([r[key] for r in mine])
            row[key] = float(values.mean())
            row[f"{key}_spread"] = float(values.max() - values.min())
        rows.append(row)
    return rows


def _fmt(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def _grid_text(grid: dict[str, Sequence[Any]]) -> str:
    """{"K": (20, 50)} -> "K {20, 50}"; grids of several keys joined by " x "."""
    def values(xs: Sequence[Any]) -> str:
        return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in xs)

    return " x ".join(f"{k} {{{values(xs)}}}" for k, xs in grid.items())


def params_lines(runs: list[dict]) -> list[str]:
    """One line per tuned model and protocol: each distinct choice over seeds and tables, most
    frequent first, with its count, and the mean tuning time."""
    lines = []
    for protocol, model in itertools.product(PROTOCOLS, TUNED):
        mine = [r for r in runs if r["protocol"] == protocol and r["model"] == model]
        if not mine:
            continue
        counts = Counter(_fmt(r["params"]) for r in mine)
        chosen = "; ".join(f"{p} ({n} of {len(mine)})" for p, n in counts.most_common())
        tune_seconds = np.mean([r["tune_seconds"] for r in mine])
        lines.append(f"- {protocol}, {MODEL_LABELS[model]}: {chosen}; "
                     f"tuning {tune_seconds:.0f} s a split")
    return lines


def markdown(summary: list[dict], runs: list[dict], meta: dict) -> str:
    lines = [
        f"Measured {meta['date']} on commit `{meta['commit']}`, {meta['machine']}, with "
        f"`{meta['command']}` ({meta['wall_seconds'] / 60:.1f} min wall"
        + (f", {meta['cpu_seconds'] / 60:.1f} min CPU" if "cpu_seconds" in meta else "")
        + f"). k = {K}; mean over seeds "
        f"{sorted({r['seed'] for r in runs})}, ± the spread (max - min). rand80: the fixed "
        "split of bench/accuracy.py, "
        "the seeds vary the models' initialisation; strat75: Microsoft Recommenders' "
        "python_stratified_split(ratio=0.75, seed), the seed also changes the split. Users: those "
        "with training ratings and a relevant held-out movie; every list excludes the movies the "
        "user rated in training. Coverage: distinct recommended movies / distinct movies in the "
        "training split. implicit's models: binary interactions (confidence alpha * 1), tuned "
        "on validation NDCG@10 of a split of the training data by the same protocol, then "
        "refitted on all of it. Ours: the recommend signature of trainer.fit_serving_module's "
        f"module, as exported, with configs.HPARAMS ({meta['ours_model']}): two-stage with "
        f"{meta['two_stage_hparams']}, rating-only without a retrieval stage. Train s: the final "
        "fit (ours: training and building the serving module), not the tuning."
        + "".join(f" The {', '.join(kept['models'])} runs (model, protocol, seed) not redone "
                  f"here are kept from the run of {kept['date']} at commit "
                  f"`{kept['commit']}` ({kept['command']})."
                  for kept in meta.get("kept", [])),
    ]
    for relevance in RELEVANCE:
        lines += ["", f"**{relevance}**: {RELEVANCE_LABELS[relevance]}.", "",
                  "| protocol | model | users | P@10 | R@10 | NDCG@10 | MAP@10 | coverage "
                  "| train s |", "|---|---|---:|---|---|---|---|---|---:|"]
        for r in summary:
            if r["relevance"] != relevance:
                continue
            cells = " | ".join(f"{r[m]:.4f} ± {r[m + '_spread']:.4f}"
                               for m in (*ranking_metrics.METRICS, "coverage"))
            lines.append(f"| {r['protocol']} | {MODEL_LABELS[r['model']]} | {r['users']} | "
                         f"{cells} | {r['train_seconds']:.1f} |")
    scale = meta.get("item_item_scale")
    if scale:
        lines += ["", f"Item-item stage cost at {_fmt(scale['params'])} (fit: models/item_item.fit "
                  "on every rating of the folder, dense head <= "
                  "item_item.DEFAULT_MAX_DENSE movies; latency: item_item.scores_tf + top-10 in a "
                  "tf.function, one user, p50 / p90 ms over 200 random histories):", ""]
        for name, fit in scale["fits"].items():
            lines.append(f"- fit {name}: {fit['ratings']} ratings, {fit['movies']} movies, head "
                         f"{fit['head']}, {fit['fit_seconds']:.1f} s, {fit['bytes']} bytes served, "
                         f"load average {fit['load_average'][0]:.1f}")
        for name, by_length in scale["latency"].items():
            cells = ", ".join(f"history {h}: {v['p50_ms']:.2f} / {v['p90_ms']:.2f} ms"
                              for h, v in by_length.items())
            lines.append(f"- latency {name}: {cells}")
        lines.append(f"- 87k movies at this N: {scale['bytes_87k']} bytes")
    tuned = params_lines(runs)
    if tuned:
        grids = "; ".join(f"{GRID_NAMES[m]} {_grid_text(g)}" for m, g in meta["grids"].items())
        lines += ["", f"Grids: {grids}. Chosen by validation NDCG@10, per seed and table "
                  "(each seed's choice in bench/results/ranking.json):", "", *tuned]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="ml-latest-small folder (default: data/ml-latest-small, fetched or "
                             "copied there by pipeline.fetch_data if missing)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help=f"subset of {','.join(PROTOCOLS)}")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"subset of {','.join(MODELS)}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--item-item-scale", type=Path, nargs="*", default=None,
                        help="also time the item-item stage's fit (at its first chosen params) "
                             "on these ratings folders (e.g. a bench.synthetic 1M set), and its "
                             "scoring latency there and on an 87k-movie random catalogue")
    parser.add_argument("--keep", type=Path, default=None,
                        help="an earlier results JSON (e.g. bench/results/ranking.json): its "
                             "runs of (model, protocol, seed) not rerun here are kept, and the "
                             "doc says so")
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    models = [m for m in args.models.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",")]
    for name in protocols + models:
        if name not in PROTOCOLS + MODELS:
            parser.error(f"unknown protocol or model {name!r}")
    from bench import accuracy
    from pipeline.fetch_data import ensure_data

    ratings, movies = accuracy.load(ensure_data(args.data_dir, dataset="ml-latest-small"))
    wall, cpu = time.perf_counter(), time.process_time()
    commit = docs.git_commit()  # the code that runs, not whatever HEAD is when it ends
    runs = []
    for protocol, seed in itertools.product(protocols, seeds):
        train, test = split(ratings, protocol, seed)
        print(f"{protocol} seed {seed}: {len(train)} train, {len(test)} test ratings",
              flush=True)
        for model in models:
            for run in run_model(model, train, test, movies, protocol, seed):
                runs.append({"protocol": protocol, "model": model, "seed": seed, **run})
                print(f"  {model:10s} {run['relevance']:5s} NDCG@{K} {run['ndcg']:.4f} "
                      f"P@{K} {run['precision']:.4f} coverage {run['coverage']:.3f} "
                      f"({run['train_seconds']:.1f} s) {run.get('params', '')}", flush=True)
    meta = {
        "date": datetime.date.today().isoformat(), "commit": commit,
        "machine": f"{os.cpu_count()}-core {platform.machine()} ({platform.platform()})",
        "command": "python -m bench.ranking " + " ".join(sys.argv[1:]),
        "seeds": seeds, "k": K, "wall_seconds": time.perf_counter() - wall,
        "cpu_seconds": time.process_time() - cpu,
        "hparams": {m: {k: v for k, v in ours_hparams(m, 0).to_config().items() if k != "seed"}
                    for m in ("ours", "two_stage") if m in models},
        "grids": {m: GRIDS[m] for m in TUNED if m in models},
        "two_stage_hparams": two_stage_source(),
        "ours_model": ours_hparams("ours", 0).model_type,
    }
    if args.keep:
        earlier = json.loads(args.keep.read_text())
        # Runs of (model, protocol, seed) this run does not redo.
        redone = set(itertools.product(models, protocols, seeds))
        kept = [r for r in earlier["runs"]
                if (r["model"], r["protocol"], r["seed"]) not in redone]
        runs = kept + runs
        meta["kept"] = earlier["meta"].get("kept", []) + [{
            "models": sorted({r["model"] for r in kept}, key=MODELS.index),
            **{k: earlier["meta"][k] for k in ("date", "commit", "command")}}]
        if "item_item_scale" in earlier["meta"] and "item_item_scale" not in meta:
            meta["item_item_scale"] = earlier["meta"]["item_item_scale"]
        for key in ("hparams", "grids"):
            meta[key] = {**earlier["meta"].get(key, {}), **meta[key]}
    if args.item_item_scale is not None:
        chosen = next((r["params"] for r in runs if r["model"] == "item_item"), None)
        if chosen is None:
            parser.error("--item-item-scale needs the item_item model in --models")
        folders = {"ml-latest-small (all ratings)": ensure_data(args.data_dir,
                                                                dataset="ml-latest-small")}
        folders.update({str(f): f for f in args.item_item_scale})
        meta["item_item_scale"] = item_item_scale(chosen, folders)
    summary = summarize(runs)
    text = markdown(summary, runs, meta)
    print(text)
    if not args.no_write:
        docs.write_results(RESULTS, {"meta": meta, "summary": summary, "runs": runs},
                           "ranking", text, heading="## Top-k ranking (bench/ranking.py)")


if __name__ == "__main__":
    main()
