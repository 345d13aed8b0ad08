"""Warm start: a Trainer run's rating model starts from the weights of the latest blessed model.

In continuous training (pipeline/pipeline.py with spans) TFX hands the Trainer the serving model
as `fn_args.base_model`. Transform's vocabularies change between spans, so rows are matched by
raw id: a user or movie both vocabularies know keeps its row of every id table (biases, factors,
SVD++'s implicit factors), a new one keeps its fresh initial row, one gone is dropped; the other
weights (the global bias, the MLP) are copied as they are. Training then continues from there
with the same early stopping, so it stops once the new span has nothing more to teach.

models/trainer.py writes `contract.WARM_START_FILE` into every exported model (`write`) and calls
`initialise` before training. A base model of another structure (another model type, embedding
size or MLP) or without the file is no error: the model trains from scratch and the reason is
recorded (`WarmStart.reason`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from models import features
from models.base import Biases, Factors, ImplicitUser, user_history
from models.contract import WARM_START_FILE
from models.hparams import HParams

USERS, MOVIES = "users", "movies"


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """What `initialise` took from a base model: rows kept per id table kind ("users",
    "movies": [kept, rows of the new vocabulary]), or why nothing was taken (`reason`)."""

    base_model: str
    kept: dict[str, list[int]]
    reason: str = ""

    @property
    def warm(self) -> bool:
        return not self.reason

    def describe(self) -> str:
        if not self.warm:
            return f"trained from scratch: {self.reason}"
        users, movies = self.kept[USERS], self.kept[MOVIES]
        return (f"warm-started from the serving model: {users[0]} of {users[1]} users and "
                f"{movies[0]} of {movies[1]} movies kept their rows")


def write(export_dir: str, hp: HParams, user_ids: Sequence[int], movie_ids: Sequence[int]
          ) -> None:
    """WARM_START_FILE in an exported model: the HParams and each table row's raw id."""
    path = os.path.join(export_dir, WARM_START_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"hparams": hp.to_config(), "user_ids": [int(u) for u in user_ids],
                   "movie_ids": [int(m) for m in movie_ids]}, f)


def _id_tables(model: tf.keras.Model) -> dict[int, str]:
    """id() of each id table variable of a built model -> USERS or MOVIES (its rows' ids)."""
    kinds: dict[int, str] = {}
    for layer in model.submodules:
        if isinstance(layer, Biases):
            pairs = ((layer.user_bias, USERS), (layer.movie_bias, MOVIES))
        elif isinstance(layer, Factors):
            pairs = ((layer.user_factors, USERS), (layer.movie_factors, MOVIES))
        else:
            pairs = ()
        kinds.update({id(table.embeddings): kind for table, kind in pairs})
        if isinstance(layer, ImplicitUser):
            kinds[id(layer.item_factors)] = MOVIES
    return kinds


def build(model: tf.keras.Model, num_movies: int) -> None:
    """Creates a model's variables (Keras makes them at the first call) with a one-row batch."""
    model({features.USER_IDX: tf.zeros([1], tf.int64),
           features.MOVIE_IDX: tf.fill([1], tf.constant(num_movies, tf.int64)),
           features.GENRES_XF: tf.zeros([1, len(features.GENRE_NAMES)]),
           features.YEAR_XF: tf.zeros([1])})


def remap_rows(old: np.ndarray, old_ids: np.ndarray, new: np.ndarray, new_ids: np.ndarray
               ) -> tuple[np.ndarray, int]:
    """`new` [N + OOV, ...] with each row whose raw id (new_ids [N]) is among old_ids [O] taken
    from `old` [O + OOV, ...]; the other rows and the OOV rows as they are. Returns the rows and
    how many were taken."""
    order = np.argsort(old_ids, kind="stable")
    at = np.searchsorted(old_ids, new_ids, sorter=order)
    found = at < len(old_ids)
    found[found] = old_ids[order[at[found]]] == new_ids[found]
    rows = new.copy()
    rows[np.flatnonzero(found)] = old[order[at[found]]]
    return rows, int(found.sum())


def initialise(model: tf.keras.Model, base_model_dir: str, hp: HParams,
               user_ids: Sequence[int], movie_ids: Sequence[int],
               build_model: Callable[[HParams, int, int, tf.RaggedTensor], tf.keras.Model]
               ) -> WarmStart:
    """Sets the weights of `model` (hp, vocabularies user_ids and movie_ids) from the exported
    base model's, matched by raw id; `build_model(hp, num_users, num_movies, history)` builds a
    model of the base's shape to read them into. Returns what was kept, or why not."""
    path = os.path.join(base_model_dir, WARM_START_FILE)
    if not tf.io.gfile.exists(path):
        return WarmStart(base_model_dir, {}, f"the base model has no {WARM_START_FILE}")
    with tf.io.gfile.GFile(path) as f:
        saved = json.load(f)
    base_hp = HParams.from_config(saved["hparams"])
    old_ids = {USERS: np.asarray(saved["user_ids"], np.int64),
               MOVIES: np.asarray(saved["movie_ids"], np.int64)}
    new_ids = {USERS: np.asarray(user_ids, np.int64), MOVIES: np.asarray(movie_ids, np.int64)}
    empty = np.zeros(0, np.int64)
    template = build_model(base_hp, len(old_ids[USERS]), len(old_ids[MOVIES]),
                           user_history(empty, empty, len(old_ids[USERS])))
    build(template, len(old_ids[MOVIES]))
    build(model, len(movie_ids))
    kinds = _id_tables(model)
    reason = _structure_differs(template, model, kinds)
    if reason:
        return WarmStart(base_model_dir, {}, reason)
    # The SavedModel's checkpoint: the rating model is the serving module's `model`; its drift and
    # new-user layers, fitted after training, are not read.
    tf.train.Checkpoint(model=template).read(
        os.path.join(base_model_dir, "variables", "variables")).expect_partial(
    ).assert_existing_objects_matched()
    kept = {USERS: [0, len(new_ids[USERS])], MOVIES: [0, len(new_ids[MOVIES])]}
    for old, new in zip(template.weights, model.weights, strict=True):
        kind = kinds.get(id(new))
        if kind is None:
            new.assign(old)
            continue
        rows, taken = remap_rows(old.numpy(), old_ids[kind], new.numpy(), new_ids[kind])
        new.assign(rows)
        kept[kind][0] = taken
    return WarmStart(base_model_dir, kept)


def _structure_differs(template: tf.keras.Model, model: tf.keras.Model, tables: dict[int, str]
                       ) -> str:
    """Why the base model's weights cannot start `model` (another class, another set of
    weights, a weight of another shape beyond the rows of its id tables, `tables` as _id_tables
    gives them), or ""."""
    if type(template) is not type(model):
        return (f"the base model is a {type(template).__name__}, this one a "
                f"{type(model).__name__}")
    old, new = template.weights, model.weights
    if len(old) != len(new):
        return f"the base model has {len(old)} weights, this one {len(new)}"
    for before, after in zip(old, new, strict=True):
        skip = 1 if id(after) in tables else 0
        if before.shape[skip:] != after.shape[skip:]:
            return (f"weight {after.name} has shape {after.shape.as_list()} here, "
                    f"{before.shape.as_list()} in the base model")
    return ""
