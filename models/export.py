"""Serving signatures: the transform graph and the model exported as one SavedModel.

Signatures (batch size B):
  serving_default: examples, string [B] serialized tf.Examples with raw features
      -> {"rating": float32 [B]} predicted rating in stars.
  predict_ids: user_id, movie_id, int64 [B] raw MovieLens ids -> {"rating": float32 [B]}.
Unknown ids are not an error: they fall into the OOV bucket (see models/mf.py).
"""

from __future__ import annotations

import tensorflow as tf
import tensorflow_transform as tft

from models import features
from serving import warmup

# Raw features a client must send; the rest of the transform's outputs are not needed to predict.
SERVING_FEATURES = (features.USER_ID, features.MOVIE_ID)
PREDICTION_KEY = "rating"


class ServingModule(tf.Module):
    """Holds the model and the transform layer so that both are saved and tracked together."""

    def __init__(self, model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput):
        super().__init__()
        self.model = model
        self.tft_layer = tf_transform_output.transform_features_layer()
        raw_spec = tf_transform_output.raw_feature_spec()
        self._parse_spec = {k: raw_spec[k] for k in SERVING_FEATURES}

    def _predict(self, raw: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        transformed = self.tft_layer(raw)
        scaled = self.model(transformed, training=False)
        stars = tf.clip_by_value(features.unscale_rating(scaled), features.RATING_MIN,
                                 features.RATING_MAX)
        return {PREDICTION_KEY: tf.reshape(stars, [-1])}

    # autograph=False: straight-line code; converting the Keras and TFT layers costs seconds.
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")],
                 autograph=False)
    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict(tf.io.parse_example(examples, self._parse_spec))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="user_id"),
                                  tf.TensorSpec([None], tf.int64, name="movie_id")],
                 autograph=False)
    def predict_ids(self, user_id: tf.Tensor, movie_id: tf.Tensor) -> dict[str, tf.Tensor]:
        return self._predict({features.USER_ID: user_id[:, None],
                              features.MOVIE_ID: movie_id[:, None]})


def export_serving_model(model: tf.keras.Model, tf_transform_output: tft.TFTransformOutput,
                         export_dir: str) -> None:
    module = ServingModule(model, tf_transform_output)
    tf.saved_model.save(module, export_dir, signatures={
        "serving_default": module.serve_examples,
        "predict_ids": module.predict_ids,
    })
    warmup.write_warmup_requests(export_dir)  # replayed by TF Serving before a version serves
