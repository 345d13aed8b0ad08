"""The movie catalogue the exported model carries: clients send ids, the model knows the rest.

Built by the Trainer from the transformed train and eval examples (Transform passes the raw movie
id and title through), so it holds every movie that has a rating in either split: movies first
rated after the training cut-off are in it too (with the OOV index and their genres and year).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

from models import arrays, features

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

    @classmethod
    def from_examples(cls, feature_spec: dict, *parts: Iterable[str]) -> Catalogue:
        """Distinct movies of transformed examples, each part a list of file patterns read as
        arrays.read_batches reads them, first occurrence wins (as from_columns of the parts'
        columns); batch by batch, so memory grows with the movies, not the ratings."""
        kept: dict[str, list[np.ndarray]] = {c: [] for c in COLUMNS}
        seen = np.zeros(0, np.int64)
        for patterns in parts:
            for batch in arrays.read_batches(patterns, feature_spec, COLUMNS):
                ids = batch[features.MOVIE_ID_PASSTHROUGH].reshape(-1)
                _, first = np.unique(ids, return_index=True)
                first = np.sort(first[~np.isin(ids[first], seen)])
                seen = np.union1d(seen, ids[first])
                for c in COLUMNS:
                    kept[c].append(batch[c][first])
        return cls.from_columns({c: np.concatenate(v) for c, v in kept.items()})

    def __len__(self) -> int:
        return len(self.movie_ids)
