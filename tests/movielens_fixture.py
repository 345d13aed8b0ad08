"""Writes small MovieLens "latest"-format folders for tests: no MovieLens data is ever committed.

Two planted structures, so that a working recommender must beat simple baselines on both tasks:
- which movies a user rates: drawn without replacement with probability proportional to
  exp(popularity_m + taste_strength * <user_taste, movie_taste>): a long tail of popularity
  (Zipf, so the most-rated-movies baseline has signal) and a few taste clusters (so a model of
  the user can beat that baseline in top-k ranking);
- the ratings: a low-rank model (user and movie factors plus biases), so a rating model must
  beat the global mean and the biases.
The files exercise the parser: CRLF line endings, quoted titles with commas, UTF-8 titles, a title
without a year, "(no genres listed)".
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from models import features

GENRES = [g for g in features.GENRE_NAMES if g != features.NO_GENRES]
START_TIMESTAMP = 1_200_000_000
# How far a user's and a movie's tastes stray from their cluster's centre (a unit vector).
TASTE_NOISE = 0.3


def _title(i: int, year: int | None) -> str:
    base = {0: "Amélie, the Fabulous Destiny", 1: "Cité des enfants perdus, La", 2: "Heat"}.get(
        i, f"Movie {i}")
    return base if year is None else f"{base} ({year})"


def choice_logits(rng: np.random.Generator, n_users: int, n_movies: int, n_tastes: int,
                  taste_strength: float, popularity_skew: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """log of the unnormalised probability that each user rates each movie, and the tastes'
    affinities <user_taste, movie_taste>; both [n_users, n_movies].

    popularity_m = -popularity_skew * log(rank of m), ranks a random permutation (Zipf); tastes:
    each user and movie belongs to one of n_tastes clusters, its taste the cluster's unit vector
    plus noise, so <user_taste, movie_taste> is ~1 within a cluster and ~0 across.
    """
    popularity = -popularity_skew * np.log(rng.permutation(n_movies) + 1.0)
    centres = np.eye(n_tastes)
    user_taste = centres[rng.integers(n_tastes, size=n_users)] + rng.normal(
        scale=TASTE_NOISE, size=(n_users, n_tastes))
    movie_taste = centres[rng.integers(n_tastes, size=n_movies)] + rng.normal(
        scale=TASTE_NOISE, size=(n_movies, n_tastes))
    affinity = user_taste @ movie_taste.T
    return popularity[None, :] + taste_strength * affinity, affinity


def write_movielens_fixture(folder: Path, n_users: int = 60, n_movies: int = 90,
                            ratings_per_user: tuple[int, int] = (20, 40), rank: int = 3,
                            noise: float = 0.3, seed: int = 0, line_ending: str = "\r\n",
                            extra_rating_rows: list[str] = (), n_tastes: int = 3,
                            taste_strength: float = 2.0, popularity_skew: float = 1.0,
                            taste_in_ratings: float = 0.5) -> Path:
    """Writes ratings.csv and movies.csv into `folder`; returns the folder.

    Each user rates a uniform number in `ratings_per_user` of distinct movies, chosen as the
    module docstring says (taste_strength 0 and popularity_skew 0: uniformly at random), at
    uniform random times over ~4 months, so the time split leaves most users in both splits.
    Ratings follow the planted low-rank model plus `taste_in_ratings` stars per unit of taste
    affinity: as in MovieLens, people rate the movies of their taste higher.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    user_factors = rng.normal(size=(n_users, rank))
    movie_factors = rng.normal(size=(n_movies, rank))
    user_bias = rng.normal(scale=0.3, size=n_users)
    movie_bias = rng.normal(scale=0.4, size=n_movies)
    logits, affinity = choice_logits(rng, n_users, n_movies, n_tastes, taste_strength,
                                     popularity_skew)
    movie_ids = np.arange(1, n_movies + 1) * 3  # sparse ids, like MovieLens

    with open(folder / "movies.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator=line_ending)
        writer.writerow(["movieId", "title", "genres"])
        for i, movie_id in enumerate(movie_ids):
            year = None if i == 3 else 1950 + (i * 7) % 70
            if i == 4:
                genres = features.NO_GENRES
            else:
                genres = "|".join(GENRES[(i + k * 5) % len(GENRES)] for k in range(1 + i % 3))
            writer.writerow([movie_id, _title(i, year), genres])

    rows = []
    for user in range(n_users):
        count = min(rng.integers(*ratings_per_user, endpoint=True), n_movies)
        # Gumbel top-k: the `count` largest of logits + Gumbel noise are a draw without
        # replacement with probabilities proportional to exp(logits).
        chosen = np.argsort(-(logits[user] + rng.gumbel(size=n_movies)))[:count]
        for m in chosen:
            score = (3.5 + user_bias[user] + movie_bias[m]
                     + user_factors[user] @ movie_factors[m] / np.sqrt(rank) * 0.8
                     + taste_in_ratings * affinity[user, m] + rng.normal(scale=noise))
            rating = float(np.clip(np.round(score * 2) / 2, features.RATING_MIN,
                                   features.RATING_MAX))
            timestamp = START_TIMESTAMP + int(rng.integers(0, 10_000_000))
            rows.append((user + 1, int(movie_ids[m]), rating, timestamp))
    rows.sort(key=lambda r: (r[0], r[3]))
    with open(folder / "ratings.csv", "w", newline="", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp" + line_ending)
        for user_id, movie_id, rating, timestamp in rows:
            f.write(f"{user_id},{movie_id},{rating:g},{timestamp}{line_ending}")
        for row in extra_rating_rows:
            f.write(row + line_ending)
    return folder
