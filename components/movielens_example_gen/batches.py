"""Ratings in batches of numpy columns: what the ExampleGen executor's Beam stages pass on.

The executor reads ratings.csv a few thousand lines at a time and keeps them together through
parsing, splitting and counting, down to the example writer: one Beam element a batch instead of
one a rating, which the DirectRunner charges for (docs/benchmarks.md, "ExampleGen time"). Pure
numpy, no Beam; tests/test_rating_batches.py and the executor's tests run them.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from components.movielens_example_gen import parsing
from models import features

# Lines read into one batch: large enough that Beam's cost per element is small, small enough
# that a bundle's batches stay a few MB.
BATCH_LINES = 4096
_NEVER = np.iinfo(np.int64).max
# A ratings.csv data line in the plain form MovieLens writes ('12,31,2.5,1260759144'): digits
# only, at most 15 to a number, so that int64 and float64 hold them exactly. Any line of
# another form (quotes, signs, spaces, exponents, blank, not UTF-8) sends its batch to the
# line-by-line parse, which names what is wrong with it.
_PLAIN_LINE = rb"[0-9]{1,15},[0-9]{1,15},[0-9]{1,2}(?:\.[0-9]{1,15})?,[0-9]{1,15}\r?"
_PLAIN_LINES = re.compile(rb"(?:%s\n)*%s" % (_PLAIN_LINE, _PLAIN_LINE))


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


def parse_plain(lines: Sequence[bytes], movie_ids: np.ndarray) -> RatingBatch | None:
    """A batch of ratings.csv lines -> its ratings, parsed a column at a time; None unless every
    line is plain (see _PLAIN_LINE) and valid: ids >= 1, stars in range, movie ids among
    `movie_ids` (sorted int64). None sends the batch to the line-by-line parse
    (parsing.parse_rating), which gives the same values for the lines accepted here, several
    times slower (docs/benchmarks.md, "ExampleGen time"), and says what is wrong with the others."""
    data = b"\n".join(lines)
    if not lines or len(movie_ids) == 0 or not _PLAIN_LINES.fullmatch(data):
        return None
    fields = np.array(data.replace(b"\r", b"").replace(b"\n", b",").split(b","))
    users, movies, times = (fields[i::4].astype(np.int64) for i in (0, 1, 3))
    ratings = fields[2::4].astype(np.float64)
    known = movie_ids[np.minimum(np.searchsorted(movie_ids, movies), len(movie_ids) - 1)]
    if ((known != movies).any() or users.min() < 1 or movies.min() < 1
            or ratings.min() < features.RATING_MIN or ratings.max() > features.RATING_MAX):
        return None
    return RatingBatch(users, movies, ratings, times)


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
