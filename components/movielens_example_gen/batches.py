"""Ratings in batches of numpy columns: what the ExampleGen executor's Beam stages pass on.

The executor reads ratings.csv a few thousand lines at a time and keeps them together through
parsing, splitting and counting, down to the example writer: one Beam element a batch instead of
one a rating, which the DirectRunner charges for (docs/benchmarks.md, "ExampleGen time"). Pure
numpy, no Beam; tests/test_rating_batches.py and the executor's tests run them.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from components.movielens_example_gen import parsing

# Lines read into one batch: large enough that Beam's cost per element is small, small enough
# that a bundle's batches stay a few MB.
BATCH_LINES = 4096
_NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True)
class RatingBatch:
    """Parsed ratings, one row per index: user and movie ids, stars, seconds since 1970."""

    users: np.ndarray  # int64 [n]
    movies: np.ndarray  # int64 [n]
    ratings: np.ndarray  # float64 [n]
    times: np.ndarray  # int64 [n]

    @classmethod
    def of(cls, ratings: Sequence[parsing.Rating]) -> RatingBatch:
        return cls(np.array([r.user_id for r in ratings], dtype=np.int64),
                   np.array([r.movie_id for r in ratings], dtype=np.int64),
                   np.array([r.rating for r in ratings], dtype=np.float64),
                   np.array([r.timestamp for r in ratings], dtype=np.int64))

    def __len__(self) -> int:
        return len(self.users)

    def take(self, rows: np.ndarray) -> RatingBatch:
        """The rows selected by a boolean mask or an index array."""
        return RatingBatch(self.users[rows], self.movies[rows], self.ratings[rows],
                           self.times[rows])

    def rows(self) -> Iterator[tuple[int, int, float, int]]:
        """(user_id, movie_id, rating, timestamp) as Python numbers, row by row."""
        return zip(self.users.tolist(), self.movies.tolist(), self.ratings.tolist(),
                   self.times.tolist(), strict=True)


def time_eval_mask(batch: RatingBatch, cutoff: float) -> np.ndarray:
    """Everything strictly before the cutoff trains; the rest (the newest) evaluates."""
    return batch.times >= cutoff


def user_time_eval_mask(batch: RatingBatch, cutoffs: Mapping[int, int | None]) -> np.ndarray:
    """Each user's ratings from their own cutoff on evaluate (a user without one only trains)."""
    per_row = [cutoffs.get(user) for user in batch.users.tolist()]
    return batch.times >= np.array([_NEVER if c is None else c for c in per_row], dtype=np.int64)


def random_eval_mask(batch: RatingBatch, seed: int, fraction: float) -> np.ndarray:
    """A seeded, stable draw per rating: the same split on any runner and any batching."""
    return np.array([random_bucket(user, movie, time, seed) < fraction
                     for user, movie, _, time in batch.rows()], dtype=bool)


def random_bucket(user_id: int, movie_id: int, timestamp: int, seed: int) -> float:
    """A stable uniform number in [0, 1) for a rating."""
    key = f"{seed}:{user_id}:{movie_id}:{timestamp}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


def user_times(batch: RatingBatch) -> Iterator[tuple[int, np.ndarray]]:
    """(user_id, that user's timestamps in the batch), for a per-user combine."""
    order = np.argsort(batch.users, kind="stable")
    users, times = batch.users[order], batch.times[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    for start, end in zip(starts.tolist(), [*starts[1:].tolist(), len(users)], strict=True):
        yield int(users[start]), times[start:end]


def id_counts(batch: RatingBatch) -> tuple[Counter, Counter]:
    """The batch's number of ratings per user id and per movie id."""
    return tuple(Counter(dict(zip(*(a.tolist() for a in np.unique(ids, return_counts=True)),
                                  strict=True)))
                 for ids in (batch.users, batch.movies))
