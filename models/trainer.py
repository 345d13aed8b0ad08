"""The Trainer's `run_fn`: trains the configured model on transformed examples and exports it."""

from __future__ import annotations

import logging
import time

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from models import data, export, features
from models.hparams import HParams
from models.mf import BiasedMF

_LOG = logging.getLogger(__name__)
COLUMNS = (features.USER_IDX, features.MOVIE_IDX, features.LABEL_XF)
HPARAMS_KEY = "hparams"


def build_model(hp: HParams, num_users: int, num_movies: int, global_mean: float
                ) -> tf.keras.Model:
    """The model of hp.model_type ("mf", or "bias": the same without factors) for vocabularies of
    the given sizes (OOV excluded)."""
    embedding_dim = 0 if hp.model_type == "bias" else hp.embedding_dim
    return BiasedMF(num_users, num_movies, embedding_dim=embedding_dim, l2=hp.l2,
                    squash=hp.squash, global_mean=global_mean)


def train(hp: HParams, num_users: int, num_movies: int, train_data: dict[str, np.ndarray],
          log_dir: str | None = None) -> tf.keras.Model:
    """Fits a model on in-memory transformed columns with early stopping on a held-out slice."""
    tf.keras.utils.set_random_seed(hp.seed)
    fit_data, val_data = data.holdout(train_data, hp.validation_fraction, hp.seed)
    global_mean = float(np.clip(fit_data[features.LABEL_XF].mean(), 0.01, 0.99))
    model = build_model(hp, num_users, num_movies, global_mean)
    model.compile(optimizer=tf.keras.optimizers.Adam(hp.learning_rate))
    callbacks = [tf.keras.callbacks.EarlyStopping(
        monitor="val_rmse", mode="min", patience=hp.early_stopping_patience,
        restore_best_weights=True)]
    if log_dir:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir))
    start = time.time()
    model.fit(data.to_dataset(fit_data, hp.batch_size, shuffle_seed=hp.seed),
              validation_data=data.to_dataset(val_data, 8192),
              epochs=hp.max_epochs, callbacks=callbacks, verbose=2)
    _LOG.info("Trained %s on %d ratings in %.1f s", hp.model_type,
              len(fit_data[features.LABEL_XF]), time.time() - start)
    return model


def rmse_in_stars(model: tf.keras.Model, columns: dict[str, np.ndarray]) -> float:
    predicted = model.predict(data.to_dataset(columns, 8192), verbose=0).reshape(-1)
    error = features.unscale_rating(predicted) - features.unscale_rating(columns[features.LABEL_XF])
    return float(np.sqrt(np.mean(error**2)))


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point (referenced by dotted name from pipeline/pipeline.py)."""
    hp = HParams.from_config((fn_args.custom_config or {}).get(HPARAMS_KEY))
    _LOG.info("Hyper-parameters: %s", hp)
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
    spec = tf_transform_output.transformed_feature_spec()
    train_data = data.load_columns(fn_args.train_files, spec, COLUMNS)
    eval_data = data.load_columns(fn_args.eval_files, spec, COLUMNS)
    model = train(hp, tf_transform_output.vocabulary_size_by_name(features.USER_VOCAB),
                  tf_transform_output.vocabulary_size_by_name(features.MOVIE_VOCAB), train_data,
                  log_dir=fn_args.model_run_dir)
    _LOG.info("Eval-split RMSE %.4f stars on %d ratings", rmse_in_stars(model, eval_data),
              len(eval_data[features.LABEL_XF]))
    export.export_serving_model(model, tf_transform_output, fn_args.serving_model_dir)
    _LOG.info("Exported the serving model to %s", fn_args.serving_model_dir)
