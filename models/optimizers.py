"""LazyAdam: Adam whose update of an id table touches only the rows a batch read. The rating
models' trainer (models/trainer.py, HParams.optimizer "lazy_adam") uses it.

tf_keras 2.16's Adam, given a table's sparse gradient (tf.IndexedSlices), still decays both
moment slots of every row and moves every row of the table at each step: a step costs the
table's size, not the batch's, so an epoch grows as ratings x (users + movies), faster than the
data (docs/benchmarks.md, "Sparse table updates"). TensorFlow Addons' LazyAdam, which did this,
is outside TF 2.16's range; this is the same rule on tf_keras' current optimizer.
"""

from __future__ import annotations

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam, except for sparse gradients: the rows a batch read get Adam's update with their
    own moments, the other rows and their moments stay as they are (a row's moments decay only
    at the steps that read it). Dense gradients (the MLP, the global bias) get Adam's update.
    Keras sums a batch's repeated rows before update_step (apply_gradients' deduplication), so
    each index appears once here."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam has no amsgrad variant")

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = (tf.cast(self.learning_rate, dtype) * tf.sqrt(1 - tf.pow(beta_2, step))
                 / (1 - tf.pow(beta_1, step)))
        key = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[key], self._velocities[key]
        rows, values = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(values)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        variable.scatter_sub(tf.IndexedSlices(
            alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))
