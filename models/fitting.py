"""What both training stages (models/trainer.py's rating model, models/retrieval_training.py's
retrieval model) share: seeding for bit-identical retrains, and how many steps Keras runs per
call into the compiled train function."""

from __future__ import annotations

import tensorflow as tf


def seed_everything(seed: int) -> None:
    """Seeds Python's, numpy's and TensorFlow's generators and turns on TensorFlow's op
    determinism (for the whole process: ops without a deterministic kernel then raise), so
    that a training stage started here repeats bit for bit. No measurable Trainer time on
    these CPUs (docs/benchmarks.md, "The gate's statistics")."""
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


# Training steps per call from Python into the compiled train function: one call per batch cost
# more than the step of a small model (MF on ml-latest-small: 3.8x faster with the per-epoch
# permutation of arrays.to_dataset, docs/benchmarks.md "Training throughput"). Callbacks acting
# at epoch ends (early stopping, learning-rate schedules, validation) are unaffected; batch-level
# ones would see one batch end per this many steps. Not a hyper-parameter: the updates are the
# same, only grouped.
STEPS_PER_EXECUTION = 64


def steps_per_execution(examples: int, batch_size: int) -> int:
    """STEPS_PER_EXECUTION, or an epoch's steps when fewer."""
    return max(1, min(STEPS_PER_EXECUTION, -(-examples // batch_size)))
