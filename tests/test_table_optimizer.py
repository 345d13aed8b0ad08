"""HParams.table_optimizer (models/trainer.py, TablesApart): the id tables get their own
optimizer, which updates only the rows a batch uses, the rest keeps hp.optimizer, and
ReduceLROnPlateau still cuts the rest's learning rate."""

import numpy as np
import pytest
import tensorflow as tf
from test_model import N_MOVIES, N_USERS, planted_ratings

from models import arrays, features, trainer
from models.hparams import HParams

HP = HParams(model_type="mf", embedding_dim=4, optimizer="adam", table_optimizer="adagrad",
             table_learning_rate=0.5, learning_rate=1e-2, batch_size=64, reduce_lr_patience=1)


def test_a_step_changes_only_the_batchs_table_rows_and_adam_moves_the_rest():
    model = trainer.build_model(HP, N_USERS, N_MOVIES, 0.6)
    model.compile(optimizer=trainer.make_optimizer(HP, model))
    assert isinstance(model.optimizer, trainer.TablesApart)
    batch = {features.USER_IDX: np.array([1, 2], np.int64),
             features.MOVIE_IDX: np.array([3, 3], np.int64),
             features.LABEL_XF: np.array([0.9, 0.1], np.float32)}
    data = tf.data.Dataset.from_tensors(batch)
    model.fit(data, verbose=0)  # builds the variables and the slots
    tables = {v.name: v.numpy() for v in model.trainable_variables if trainer.is_table(v)}
    rest = {v.name: v.numpy() for v in model.trainable_variables if not trainer.is_table(v)}
    assert tables and rest
    model.fit(data, verbose=0)
    for v in model.trainable_variables:
        if trainer.is_table(v):
            moved = np.flatnonzero(np.any(v.numpy() != tables[v.name], axis=1))
            rows = [1, 2] if v.shape[0] == N_USERS + features.NUM_OOV_BUCKETS else [3]
            assert set(moved) <= set(rows) and len(moved), (v.name, moved)
    assert any(np.any(v.numpy() != rest[v.name]) for v in model.trainable_variables
               if not trainer.is_table(v))


def fit_with_plateau(hp: HParams) -> tuple[tf.keras.Model, dict[str, np.ndarray]]:
    """A model of `hp` with trainer.make_optimizer's optimizer, 3 epochs on planted ratings,
    the plateau halving the rate after epochs 2 and 3: (the model, its validation columns)."""
    columns, _, _ = planted_ratings()
    model = trainer.build_model(hp, N_USERS, N_MOVIES, 0.6)
    model.compile(optimizer=trainer.make_optimizer(hp, model))
    fit, val = arrays.holdout(columns, 0.1, 0)
    plateau = tf.keras.callbacks.ReduceLROnPlateau(monitor="val_rmse", factor=0.5, patience=0,
                                                   min_delta=10.0)  # cuts after epochs 2, 3
    model.fit(arrays.to_dataset(fit, 64, shuffle_seed=0),
              validation_data=arrays.to_dataset(val, 1024), epochs=3, callbacks=[plateau],
              verbose=0)
    return model, val


def test_training_with_tables_apart_learns_and_the_plateau_cuts_the_dense_rate():
    model, val = fit_with_plateau(HP)
    assert float(model.optimizer.lr.numpy()) == pytest.approx(1e-2 / 4)
    assert trainer.rmse_in_stars(model, val) < 0.95 * np.std(
        features.unscale_rating(val[features.LABEL_XF]))


def test_a_table_optimizer_needs_the_model_and_a_known_name():
    with pytest.raises(ValueError, match="needs the model"):
        trainer.make_optimizer(HP)
    with pytest.raises(ValueError, match="table_optimizer must be"):
        HParams(table_optimizer="lamb")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        HParams(table_optimizer="adagrad", optimizer="lazy_adam")
