"""The movie catalogue the exported model carries: clients send ids, the model knows the rest.

Built by the Trainer from the train and eval examples as it transforms them (Transform's graph
passes the raw movie id and title through), so it holds every movie that has a rating in either
split: movies first rated after the training cut-off are in it too (with the OOV index and their
genres and year). `Collector` keeps each movie's first row batch by batch while the Trainer reads
its columns, so the examples are read once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from models import features

COLUMNS = (features.MOVIE_ID_PASSTHROUGH, features.MOVIE_IDX, features.GENRES_XF,
           features.YEAR_XF, features.TITLE_PASSTHROUGH)


@dataclasses.dataclass(frozen=True)
class Catalogue:
    """One row per movie, M rows, sorted by movie id."""

    movie_ids: np.ndarray  # int64 [M], MovieLens movieId
    movie_idx: np.ndarray  # int64 [M], vocabulary index; the OOV index for movies not trained on
    genres: np.ndarray  # float32 [M, G] multi-hot
    years: np.ndarray  # float32 [M] z-scored release year
    titles: np.ndarray  # object [M] of bytes

    @classmethod
    def from_columns(cls, *parts: dict[str, np.ndarray]) -> Catalogue:
        """Distinct movies of transformed columns (catalogue.COLUMNS), first occurrence wins."""
        columns = {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}
        ids, first = np.unique(columns[features.MOVIE_ID_PASSTHROUGH].reshape(-1),
                               return_index=True)
        return cls(
            movie_ids=ids.astype(np.int64),
            movie_idx=columns[features.MOVIE_IDX].reshape(-1)[first].astype(np.int64),
            genres=columns[features.GENRES_XF][first].astype(np.float32),
            years=columns[features.YEAR_XF].reshape(-1)[first].astype(np.float32),
            titles=columns[features.TITLE_PASSTHROUGH].reshape(-1)[first],
        )

    def __len__(self) -> int:
        return len(self.movie_ids)


class Collector:
    """Each movie's first row of batches of transformed columns (COLUMNS among them), in the
    order they come; memory grows with the movies, not the ratings."""

    def __init__(self) -> None:
        self._kept: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        self._seen = np.zeros(0, np.int64)

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Keeps the rows of movies not seen in earlier batches, one per movie."""
        ids = batch[features.MOVIE_ID_PASSTHROUGH].reshape(-1)
        _, first = np.unique(ids, return_index=True)
        first = np.sort(first[~np.isin(ids[first], self._seen)])
        self._seen = np.union1d(self._seen, ids[first])
        for c in COLUMNS:
            self._kept[c].append(batch[c][first])

    def watch(self, batches: Iterable[dict[str, np.ndarray]]
              ) -> Iterator[dict[str, np.ndarray]]:
        """The batches unchanged, each added on its way through."""
        for batch in batches:
            self.add(batch)
            yield batch

    def catalogue(self) -> Catalogue:
        """The movies kept so far (Catalogue.from_columns of their first rows)."""
        return Catalogue.from_columns({c: np.concatenate(v) for c, v in self._kept.items()})
