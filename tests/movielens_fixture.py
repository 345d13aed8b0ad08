"""Writes small MovieLens "latest"-format folders for tests: no MovieLens data is ever committed.

Ratings come from a planted low-rank model (user and movie factors plus biases), so a working
recommender must beat the global mean on them. The files exercise the parser: CRLF line endings,
quoted titles with commas, UTF-8 titles, a title without a year, "(no genres listed)".
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from models import features

GENRES = [g for g in features.GENRE_NAMES if g != features.NO_GENRES]
START_TIMESTAMP = 1_200_000_000


def _title(i: int, year: int | None) -> str:
    base = {0: "Amélie, the Fabulous Destiny", 1: "Cité des enfants perdus, La", 2: "Heat"}.get(
        i, f"Movie {i}")
    return base if year is None else f"{base} ({year})"


def write_movielens_fixture(folder: Path, n_users: int = 60, n_movies: int = 90,
                            ratings_per_user: tuple[int, int] = (20, 40), rank: int = 3,
                            noise: float = 0.3, seed: int = 0, line_ending: str = "\r\n",
                            extra_rating_rows: list[str] = ()) -> Path:
    """Writes ratings.csv and movies.csv into `folder`; returns the folder."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    user_factors = rng.normal(size=(n_users, rank))
    movie_factors = rng.normal(size=(n_movies, rank))
    user_bias = rng.normal(scale=0.3, size=n_users)
    movie_bias = rng.normal(scale=0.4, size=n_movies)
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
        count = rng.integers(*ratings_per_user, endpoint=True)
        for m in rng.choice(n_movies, size=min(count, n_movies), replace=False):
            score = (3.5 + user_bias[user] + movie_bias[m]
                     + user_factors[user] @ movie_factors[m] / np.sqrt(rank) * 0.8
                     + rng.normal(scale=noise))
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
