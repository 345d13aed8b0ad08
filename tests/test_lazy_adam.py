"""models/optimizers.py's LazyAdam: Adam's update on the rows a sparse gradient names, nothing
on the others; Adam itself on dense gradients; and a rating model trained with it learns."""

import numpy as np
import pytest
import tensorflow as tf
from test_table_optimizer import fit_with_plateau

from models import features, trainer
from models.hparams import HParams
from models.optimizers import LazyAdam

ROWS, DIM = 6, 3


def table(seed: int = 0) -> tf.Variable:
    return tf.Variable(np.random.default_rng(seed).normal(size=(ROWS, DIM)).astype(np.float32))


def sparse(rows: list[int], seed: int) -> tf.IndexedSlices:
    values = np.random.default_rng(seed).normal(size=(len(rows), DIM)).astype(np.float32)
    return tf.IndexedSlices(tf.constant(values), tf.constant(rows, tf.int64),
                            tf.constant([ROWS, DIM], tf.int64))


def test_only_the_rows_a_sparse_gradient_names_move_and_their_moments_follow_adam():
    lazy, dense = table(), table()
    lazy_opt, adam = LazyAdam(0.1), tf.keras.optimizers.Adam(0.1)
    before = lazy.numpy().copy()
    lazy_opt.apply_gradients([(sparse([0, 2], 0), lazy)])
    assert list(np.flatnonzero(np.any(lazy.numpy() != before, axis=1))) == [0, 2]
    lazy_opt.apply_gradients([(sparse([2, 4], 1), lazy)])
    lazy_opt.apply_gradients([(sparse([4, 0, 2], 2), lazy)])
    assert list(np.flatnonzero(np.any(lazy.numpy() != before, axis=1))) == [0, 2, 4]
    slots = [s.numpy() for s in lazy_opt.variables if s.shape == (ROWS, DIM)]
    assert len(slots) == 2 and all(not s[[1, 3, 5]].any() for s in slots)  # moments untouched
    # A row read at every step gets exactly Adam's trajectory (row 2 here): Adam's own decay of
    # the others is what LazyAdam skips.
    for step, rows in enumerate(([0, 2], [2, 4], [4, 0, 2])):
        adam.apply_gradients([(tf.convert_to_tensor(sparse(rows, step)), dense)])
    np.testing.assert_allclose(lazy.numpy()[2], dense.numpy()[2], rtol=1e-5)  # rounding
    # Row 0, skipped at step 1: Adam moved it on its momentum then, LazyAdam did not.
    assert not np.allclose(lazy.numpy()[0], dense.numpy()[0], rtol=1e-3)


def test_repeated_rows_are_summed_and_dense_gradients_get_adams_update():
    lazy, dense = table(), table()
    grad = sparse([1, 1, 3], 7)
    LazyAdam(0.05).apply_gradients([(grad, lazy)])
    tf.keras.optimizers.Adam(0.05).apply_gradients([(tf.convert_to_tensor(grad), dense)])
    np.testing.assert_allclose(lazy.numpy(), dense.numpy(), rtol=1e-5)  # rounding
    lazy, dense = table(1), table(1)
    values = tf.constant(np.random.default_rng(2).normal(size=(ROWS, DIM)).astype(np.float32))
    LazyAdam(0.05).apply_gradients([(values, lazy)])
    tf.keras.optimizers.Adam(0.05).apply_gradients([(values, dense)])
    np.testing.assert_array_equal(lazy.numpy(), dense.numpy())


def test_a_rating_model_trained_with_lazy_adam_learns_and_the_plateau_cuts_its_rate():
    model, val = fit_with_plateau(HParams(model_type="neural", embedding_dim=4,
                                          optimizer="lazy_adam", learning_rate=1e-2,
                                          batch_size=64))
    assert isinstance(model.optimizer, LazyAdam)
    assert float(model.optimizer.learning_rate.numpy()) == np.float32(1e-2 / 4)
    assert trainer.rmse_in_stars(model, val) < 0.95 * np.std(
        features.unscale_rating(val[features.LABEL_XF]))


def test_amsgrad_is_refused_rather_than_ignored_on_sparse_rows():
    with pytest.raises(ValueError, match="no amsgrad"):
        LazyAdam(0.1, amsgrad=True)
