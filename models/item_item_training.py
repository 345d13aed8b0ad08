"""Fitting the item-item stage of `recommend` (models/item_item.py) in the Trainer.

models/trainer.py's fit_serving_module calls `train_item_item` when HParams.item_item is set: a
random holdout of the training interactions; on the rest (its Gram matrix X'WX computed once per
user weight), one closed-form solve per l2 of ItemItemHParams.l2s (with the first user weight),
then one per other user weight at the best l2, then, when the movies' side features are given
(genres, genre combination, release-year buckets, rarer title words: `side_features`), one per
other side weight at the best l2 and the next larger one (side features favour more shrinkage);
each on the ItemItemHParams.choice_dense most rated movies and scored with every popularity
exponent by the holdout's NDCG@10 of all-movie top-10 lists (seen movies excluded, as `recommend`
serves them; at most choice_users holdout users, a seeded sample); then the best solved on every
interaction and the max_dense most rated movies, cut to each movie's N neighbours plus a rank-r
residual (item_item.SparseLowRank). The choice and its validation NDCGs go to the run record. A
warm start chooses again: the serving model's choice, reused, cost top-k NDCG (docs/benchmarks.md,
"Warm start").
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import re
import time

import numpy as np
import scipy.sparse as sp

from models import arrays, features, item_item, progress, ranking_metrics
from models.catalogue import Catalogue
from models.hparams import ItemItemHParams

_LOG = logging.getLogger(__name__)

K = 10
_WORD = re.compile(r"[^\W_]{3,}")
_YEAR_SUFFIX = re.compile(r"\(\d{4}\)\s*$")
USERS_PER_CHUNK = 1024  # validation users scored at a time: a dense [users, movies] block


@dataclasses.dataclass(frozen=True)
class ItemItemChoice:
    """What train_item_item chose: l2, the popularity exponent, the user weight, the side
    weight, and the holdout NDCG@10 of every "l2/exponent/user weight/side weight" tried
    (`record_key`); `interactions`: how many training interactions they were chosen for; `seconds`:
    the whole stage, `choice_seconds` of it the choice."""

    l2: float
    popularity_exponent: float
    user_weight: float
    validation_ndcg: dict[str, float]
    seconds: float
    interactions: int = 0
    choice_seconds: float = 0.0
    side_weight: float = 0.0

    def record(self) -> dict:
        """The choice without its wall-clock seconds, for the exported model's training choices:
        the model's identity (models/identity.py) covers that file, and two identical retrains
        must be the same model for the Pusher."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("seconds", "choice_seconds")}


def record_key(record: dict) -> str:
    """The validation_ndcg key of a recorded choice (ItemItemChoice.record); records written
    before the side weight existed have "l2/exponent/user weight" keys."""
    key = _key(record["l2"], record["popularity_exponent"], record.get("user_weight", 0.0),
               record.get("side_weight", 0.0))
    return key if "side_weight" in record else key.rsplit("/", 1)[0]


def title_words(titles: np.ndarray, max_share: float) -> sp.csr_matrix:
    """float32 [len(titles), W] sparse multi-hot of the words (3+ letters or digits, lower
    case, the trailing "(year)" left out) that 2 to max(2, max_share x the titles) of the
    titles share: a series' or franchise's words, not the common ones ("the", "love")."""
    words = [set(_WORD.findall(_YEAR_SUFFIX.sub("", t.decode("utf-8", "replace")).lower()))
             for t in titles]
    counts = collections.Counter(w for title in words for w in title)
    limit = max(2, int(max_share * len(titles)))
    column: dict[str, int] = {}
    for word in sorted(w for w, n in counts.items() if 2 <= n <= limit):
        column[word] = len(column)
    rows = [(r, column[w]) for r, title in enumerate(words) for w in title if w in column]
    r, c = np.array(rows, np.int64).reshape(-1, 2).T
    return sp.csr_matrix((np.ones(len(r), np.float32), (r, c)), shape=(len(titles), len(column)))


def side_features(movies: Catalogue, num_movies: int, year_buckets: tuple[float, ...],
                  title_max_share: float) -> sp.csr_matrix:
    """float32 [num_movies, F] sparse, by movie index, groups side by side: each vocabulary
    movie's genres (multi-hot, "(no genres listed)" left out: it is no likeness), its genre
    combination (movies with the very same genres), its release-year bucket at each width of
    `year_buckets` (the z-scored year // width; an unknown year is z 0, the mean's bucket),
    and its title's rarer words (`title_words`; none when title_max_share is 0); empty rows
    for indices the catalogue lacks."""
    known = (movies.movie_idx >= 0) & (movies.movie_idx < num_movies)
    index = movies.movie_idx[known]
    genres = np.delete(movies.genres[known], features.GENRE_NAMES.index(features.NO_GENRES),
                       axis=1) > 0
    groups = [sp.csr_matrix(genres, dtype=np.float32)]
    codes = [np.unique(genres, axis=0, return_inverse=True)[1].reshape(-1)]
    codes += [np.unique(np.floor(movies.years[known] / width), return_inverse=True)[1]
              for width in year_buckets]
    groups += [sp.csr_matrix((np.ones(len(c), np.float32), (np.arange(len(c)), c)),
                             shape=(len(c), c.max() + 1 if len(c) else 0)) for c in codes]
    if title_max_share > 0:
        groups.append(title_words(movies.titles[known], title_max_share))
    rows = sp.hstack(groups, format="csr")
    placed = sp.csr_matrix((np.ones(len(index), np.float32), (index, np.arange(len(index)))),
                           shape=(num_movies, len(index)))
    return sp.csr_matrix(placed @ rows)


def interactions(users: np.ndarray, movies: np.ndarray, num_users: int, num_movies: int
                 ) -> sp.csr_matrix:
    """Binary float32 [num_users, num_movies] CSR: 1 where the user rated the movie."""
    x = sp.csr_matrix((np.ones(len(users), np.float32), (users, movies)),
                      shape=(num_users, num_movies))
    x.data[:] = 1.0
    return x


def holdout_ndcg(b: np.ndarray, head: np.ndarray, scales: list[np.ndarray], x: sp.csr_matrix,
                 users: np.ndarray, relevant: list[set[int]]) -> list[float]:
    """Mean NDCG@K of these users' top K by the dense B [H, H] of the head movies, scaled by
    each of `scales` ([M] each), movies the user has in x excluded; movies outside the head
    score 0, as served. One product of a chunk's histories with B serves every scale."""
    tops: list[list[np.ndarray]] = [[] for _ in scales]
    for start in range(0, len(users), USERS_PER_CHUNK):
        seen = x[users[start:start + USERS_PER_CHUNK]]
        product = np.asarray(seen[:, head] @ b)
        for top, scale in zip(tops, scales, strict=True):
            top.append(top_k(seen, product * scale[head], head))
    return [ranking_metrics.mean(ranking_metrics.per_user(
        np.concatenate(top) if top else np.zeros((0, K), np.int64), relevant, K))["ndcg"]
        for top in tops]


def top_k(seen: sp.csr_matrix, scores: np.ndarray, head: np.ndarray) -> np.ndarray:
    """Movie indices [U, K], best first, of users with histories `seen` [U, M] by their scores
    [U, H] of the head movies (overwritten), seen movies excluded, the movies outside the head
    scoring 0. A user whose K-th best head movie scores above 0 has the same top K among the
    head alone (no outside movie can enter it), which skips a selection over all M movies (the
    cost of the choice at 1M ratings); the other users are ranked over every movie."""
    scores[seen[:, head].nonzero()] = -np.inf
    top = np.zeros((seen.shape[0], K), np.int64)
    inside = np.zeros(seen.shape[0], bool)
    if len(head) > K:
        best = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        inside = np.take_along_axis(scores, best, axis=1).min(axis=1) > 0
        top[inside] = head[_ordered(scores[inside], best[inside])]
    if not inside.all():
        rest = seen[~inside]
        every = np.zeros(rest.shape, np.float32)
        every[:, head] = scores[~inside]
        every[rest.nonzero()] = -np.inf
        top[~inside] = _ordered(every, np.argpartition(-every, K - 1, axis=1)[:, :K])
    return top


def _ordered(scores: np.ndarray, best: np.ndarray) -> np.ndarray:
    """The columns `best` [U, K] of scores [U, N], best score first (ties: as given)."""
    order = np.argsort(-np.take_along_axis(scores, best, axis=1), axis=1, kind="stable")
    return np.take_along_axis(best, order, axis=1)


def _key(l2: float, exponent: float, user_weight: float, side_weight: float) -> str:
    return f"{l2:g}/{exponent:g}/{user_weight:g}/{side_weight:g}"


def _choose(hp: ItemItemHParams, pairs: dict[str, np.ndarray], num_users: int,
            num_movies: int, side: sp.csr_matrix | None
            ) -> tuple[tuple[float, float, float, float], dict[str, float]]:
    """((l2, exponent, user weight, side weight), NDCG of each tried) on a holdout of the
    interactions, scored by at most hp.choice_users of its users (a seeded sample); the first
    of each list when the holdout has no user with a history left (tiny data). Without side
    features only the first side weight is tried."""
    fit, val = arrays.holdout(pairs, hp.validation_fraction, hp.seed)
    x = interactions(fit[features.USER_IDX], fit[features.MOVIE_IDX], num_users, num_movies)
    relevant: dict[int, set[int]] = {}
    has_history = np.diff(x.indptr) > 0
    for user, movie in zip(val[features.USER_IDX], val[features.MOVIE_IDX], strict=True):
        if has_history[user]:
            relevant.setdefault(int(user), set()).add(int(movie))
    users = np.array(sorted(relevant), np.int64)
    if len(users) > hp.choice_users:
        users = np.sort(np.random.default_rng(hp.seed).choice(users, hp.choice_users,
                                                              replace=False))
    if not len(users) or num_movies < K:
        return (hp.l2s[0], hp.popularity_exponents[0], hp.user_weights[0],
                hp.side_weights[0]), {}
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    head = item_item.head_movies(counts, max_dense=min(hp.max_dense, hp.choice_dense))
    ndcg: dict[str, float] = {}
    tried: dict[str, tuple[float, float, float, float]] = {}
    scales = [item_item.popularity_scale(counts, e) for e in hp.popularity_exponents]
    wanted = [relevant[u] for u in users]

    grams: dict[float, tuple[np.ndarray, float]] = {}  # by user weight: one X'WX each

    def score(l2: float, user_weight: float, side_weight: float) -> None:
        if user_weight not in grams:
            grams[user_weight] = item_item.weighted_gram(x, head, user_weight)
        g, shrink = grams[user_weight]
        b = item_item.solve_weighted(g.copy(), shrink, head, l2, hp.dropout, side, side_weight)
        values = holdout_ndcg(b, head, scales, x, users, wanted)
        for exponent, value in zip(hp.popularity_exponents, values, strict=True):
            key = _key(l2, exponent, user_weight, side_weight)
            tried[key] = (l2, exponent, user_weight, side_weight)
            ndcg[key] = value

    def best() -> tuple[float, float, float, float]:
        return tried[max(ndcg, key=ndcg.get)]  # the first of equals: the order tried

    for l2 in hp.l2s:
        score(l2, hp.user_weights[0], hp.side_weights[0])
    best_l2 = best()[0]
    for user_weight in hp.user_weights[1:]:
        score(best_l2, user_weight, hp.side_weights[0])
    if side is not None:
        user_weight = best()[2]
        for side_weight in hp.side_weights[1:]:
            for l2 in (best_l2, *[v for v in sorted(hp.l2s) if v > best_l2][:1]):
                score(l2, user_weight, side_weight)
    return best(), ndcg


def train_item_item(hp: ItemItemHParams, num_users: int, num_movies: int,
                    train_data: dict[str, np.ndarray], movies: Catalogue | None = None
                    ) -> tuple[item_item.SparseLowRank, ItemItemChoice]:
    """The item-item stage of the training interactions (USER_IDX, MOVIE_IDX columns) and what
    was chosen for it on the holdout; with the catalogue, its side features are tried."""
    start = time.time()
    pairs = {c: train_data[c] for c in (features.USER_IDX, features.MOVIE_IDX)}
    side = (None if movies is None or len(hp.side_weights) < 2
            else side_features(movies, num_movies, hp.year_buckets, hp.title_max_share))
    (l2, exponent, user_weight, side_weight), ndcg = _choose(hp, pairs, num_users, num_movies,
                                                            side)
    choice_seconds = time.time() - start
    _LOG.info("Item-item stage: l2 %g, popularity exponent %g, user weight %g, side weight %g "
              "chosen on the holdout (NDCG@10 of l2/exponent/user weight/side weight: %s) in "
              "%.1f s", l2, exponent, user_weight, side_weight,
              ", ".join(f"{k}: {v:.4f}" for k, v in ndcg.items()) or "not measured: no holdout",
              choice_seconds)
    x = interactions(pairs[features.USER_IDX], pairs[features.MOVIE_IDX], num_users, num_movies)
    counts = np.asarray(x.sum(axis=0)).reshape(-1)
    head = item_item.head_movies(counts, max_dense=hp.max_dense)
    b = item_item.regularised_solve(x, head, l2, hp.dropout, user_weight, side, side_weight)
    stage = item_item.sparse_low_rank(b, head, item_item.popularity_scale(counts, exponent),
                                      hp.neighbours, hp.rank, hp.seed)
    seconds = time.time() - start
    progress.report(f"item-item stage fitted on {x.nnz} interactions, {len(head)} of "
                    f"{num_movies} movies solved, in {seconds:.1f} s ({stage.nbytes / 1e6:.1f} "
                    "MB served)", throttle=False)
    return stage, ItemItemChoice(l2, exponent, user_weight, ndcg, seconds,
                                 len(pairs[features.USER_IDX]), choice_seconds, side_weight)
