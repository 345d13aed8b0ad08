"""Parsing of MovieLens "latest"-format CSVs (ratings.csv, movies.csv) into tf.Examples.

Pure Python, no Beam: the executor maps these functions over the data and the tests call them
directly. Every problem is raised as `BadRowError`, whose message names the field and quotes the
row, so a bad row can be reported (by file and line: movies here, ratings in the executor, which
knows where each line starts) and skipped without losing the good ones.

Rows that parse but break the schema's domains (schema/schema.pbtxt: a rating outside 0.5..5.0,
an id below 1, a negative timestamp) are rejected here too: quarantined with their line number
like any bad row, so that a few typos do not stop the run at the ExampleValidator.
"""

from __future__ import annotations

import csv
import io
import math
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import tensorflow as tf

from components.movielens_example_gen.config import MOVIES_FILE, RATINGS_FILE  # noqa: F401
from models import features

RATINGS_HEADER = ("userId", "movieId", "rating", "timestamp")
MOVIES_HEADER = ("movieId", "title", "genres")

# "Heat (1995)", "Nixon (1995) ", "Babylon 5 (1993–1998)": the first year of a trailing (YYYY...).
_YEAR_RE = re.compile(r"\((\d{4})(?:\s*[-–]\s*\d{4})?\)\s*$")


class BadRowError(ValueError):
    """A row that cannot be turned into an example; the message says where and why."""


class InputDataError(ValueError):
    """The input files cannot make a dataset: a wrong header, too many bad rows, no usable row.

    An expected failure: the local runner prints the message, which says what, where and what to
    do, without a traceback (README: Failure modes).
    """


class MissingInputError(InputDataError, FileNotFoundError):
    """ratings.csv or movies.csv is not in the input folder."""


@dataclass(frozen=True)
class Movie:
    movie_id: int
    title: str
    genres: tuple[str, ...]
    year: int | None


@dataclass(frozen=True)
class Rating:
    user_id: int
    movie_id: int
    rating: float
    timestamp: int


def parse_year(title: str) -> int | None:
    """Release year from a MovieLens title, or None when the title carries none."""
    match = _YEAR_RE.search(title)
    return int(match.group(1)) if match else None


def split_genres(genres: str) -> tuple[str, ...]:
    """'Action|Comedy' -> ('Action', 'Comedy'); empty or missing -> ('(no genres listed)',)."""
    values = tuple(g.strip() for g in genres.split("|") if g.strip())
    return values or (features.NO_GENRES,)


def _int_field(value: str, field: str, where: str, minimum: int | None = None) -> int:
    try:
        number = int(value)
    except ValueError:
        raise BadRowError(f"{where}field {field!r} is not an integer: {value!r}") from None
    if minimum is not None and number < minimum:
        raise BadRowError(f"{where}field {field!r} is below {minimum}: {value!r}")
    return number


def check_header(header: Iterable[str], expected: tuple[str, ...], path: str) -> None:
    """Raises InputDataError unless the CSV header starts with the expected columns."""
    got = tuple(h.strip().lstrip("\ufeff") for h in header)
    if got[: len(expected)] != expected:
        raise InputDataError(
            f"{path}: expected a MovieLens header starting with {','.join(expected)!r}, "
            f"got {','.join(got)!r}. Is this a MovieLens 'latest'-format folder?"
        )


def read_movies(lines: Iterable[str], path: str = MOVIES_FILE
                ) -> tuple[dict[int, Movie], list[str]]:
    """Parses movies.csv text into {movie_id: Movie}.

    `lines` may end in CRLF or LF; quoted titles with commas and UTF-8 are handled by `csv`.
    Returns the movies and a list of messages for rows that were skipped.
    """
    reader = csv.reader(lines)
    try:
        check_header(next(reader), MOVIES_HEADER, path)
    except StopIteration:
        raise InputDataError(f"{path}: file is empty") from None
    movies: dict[int, Movie] = {}
    rejected: list[str] = []
    first_line = reader.line_num + 1
    for row in reader:
        # A quoted title may span lines: the row is named by the line it starts on.
        where = f"{path} line {first_line}: "
        first_line = reader.line_num + 1
        if not row:
            continue
        try:
            if len(row) != 3:
                raise BadRowError(
                    f"{where}expected 3 fields (movieId,title,genres), got {len(row)}")
            movie_id = _int_field(row[0], "movieId", where, minimum=1)
            if movie_id in movies:
                raise BadRowError(f"{where}duplicate movieId {movie_id}")
            title = row[1].strip()
            movies[movie_id] = Movie(movie_id, title, split_genres(row[2]), parse_year(title))
        except BadRowError as e:
            rejected.append(str(e))
    return movies, rejected


def parse_rating(line: str) -> Rating:
    """Parses one ratings.csv data line ('1,31,2.5,1260759144'); raises BadRowError.

    The error names the field and quotes the row; the caller prefixes the file and line number.
    """
    line = line.rstrip("\r\n")
    try:
        return _parse_rating_fields(line)
    except BadRowError as e:
        raise BadRowError(f"{e} (row {line!r})") from None


def _parse_rating_fields(line: str) -> Rating:
    row = line.split(",") if '"' not in line else next(csv.reader([line]))
    if len(row) != 4:
        raise BadRowError(
            f"expected 4 fields (userId,movieId,rating,timestamp), got {len(row)}")
    user_id = _int_field(row[0], "userId", "", minimum=1)
    movie_id = _int_field(row[1], "movieId", "", minimum=1)
    try:
        rating = float(row[2])
    except ValueError:
        raise BadRowError(f"field 'rating' is not a number: {row[2]!r}") from None
    if not math.isfinite(rating):
        raise BadRowError(f"field 'rating' is not finite: {row[2]!r}")
    if not features.RATING_MIN <= rating <= features.RATING_MAX:
        raise BadRowError(f"field 'rating' is out of range {features.RATING_MIN:g}.."
                          f"{features.RATING_MAX:g}: {row[2]!r}")
    timestamp = _int_field(row[3], "timestamp", "", minimum=0)
    return Rating(user_id, movie_id, rating, timestamp)


def rating_example(rating: Rating) -> tf.train.Example:
    """The rating's own features: user_id, movie_id, rating, timestamp."""
    return tf.train.Example(features=tf.train.Features(feature={
        features.USER_ID: _int64([rating.user_id]),
        features.MOVIE_ID: _int64([rating.movie_id]),
        features.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[rating.rating])),
        features.TIMESTAMP: _int64([rating.timestamp]),
    }))


def movie_example(movie: Movie) -> tf.train.Example:
    """The movie's features joined onto each of its ratings: genres, title, year if known."""
    feature = {
        features.GENRES: _bytes([g.encode("utf-8") for g in movie.genres]),
        features.TITLE: _bytes([movie.title.encode("utf-8")]),
    }
    if movie.year is not None:
        feature[features.YEAR] = _int64([movie.year])
    return tf.train.Example(features=tf.train.Features(feature=feature))


def to_example(rating: Rating, movie: Movie) -> tf.train.Example:
    """Joins a rating with its movie into a tf.Example with the raw features of `features`."""
    example = rating_example(rating)
    example.MergeFrom(movie_example(movie))
    return example


def serialize_joined(rating: Rating, movie_bytes: bytes) -> bytes:
    """Serialized `to_example(rating, movie)` given `movie_example(movie)` serialized once.

    Concatenated protobuf messages parse as their merge, so the movie's part is built once per
    movie instead of once per rating (a large share of the ExampleGen's time otherwise).
    """
    return (rating_bytes(rating.user_id, rating.movie_id, rating.rating, rating.timestamp)
            + movie_bytes)


def rating_bytes(user_id: int, movie_id: int, rating: float, timestamp: int) -> bytes:
    """`rating_example(Rating(...)).SerializeToString()`, up to field order, written directly
    in protobuf's wire format: building the message costs about 10x as much, and this runs once
    a rating (tests/test_parsing.py parses both and compares)."""
    user, movie, time = _varint(user_id), _varint(movie_id), _varint(timestamp)
    body = (_USER_ENTRY[len(user)] + user + _MOVIE_ENTRY[len(movie)] + movie
            + _RATING_ENTRY + _FLOAT32.pack(rating) + _TIME_ENTRY[len(time)] + time)
    return b"\x0a" + _varint(len(body)) + body  # Example.features


def _varint(n: int) -> bytes:
    """Protobuf's base-128 varint of an int in 0 .. 2**64 - 1."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _int64_entry(key: str) -> list[bytes]:
    """The bytes before an int64 feature's varint in Features.feature, by the varint's length:
    entry {key, value: Feature{int64_list: Int64List{value: [varint]}}}, lengths prefixed."""
    k = key.encode()
    return [bytes((0x0A, 8 + len(k) + n, 0x0A, len(k))) + k
            + bytes((0x12, 4 + n, 0x1A, 2 + n, 0x0A, n)) for n in range(11)]


def _float_entry(key: str) -> bytes:
    """The bytes before a one-value float feature's 4 little-endian bytes in Features.feature."""
    k = key.encode()
    return (bytes((0x0A, 12 + len(k), 0x0A, len(k))) + k
            + bytes((0x12, 8, 0x12, 6, 0x0A, 4)))


_USER_ENTRY, _MOVIE_ENTRY, _TIME_ENTRY = (
    _int64_entry(k) for k in (features.USER_ID, features.MOVIE_ID, features.TIMESTAMP))
_RATING_ENTRY = _float_entry(features.RATING)
_FLOAT32 = struct.Struct("<f")


def _int64(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _bytes(values: list[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def read_movies_file(path: str) -> tuple[dict[int, Movie], list[str]]:
    """read_movies() of a local or remote (gs://, s3://) movies.csv."""
    with tf.io.gfile.GFile(path, "rb") as f:
        return read_movies(iter_text_lines(f.read()), path)


def iter_text_lines(data: bytes) -> Iterator[str]:
    """UTF-8 bytes of a CSV file -> lines for `csv`, whatever the line endings."""
    return iter(io.StringIO(data.decode("utf-8-sig"), newline=""))
