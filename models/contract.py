"""The contracts between the models package and everything that uses it, each name defined once.

The serving contract is what a client of an exported model may rely on, whichever model type it
holds: the name TF Serving serves it under, its signatures with their input and output keys (see
models/export.py for what each computes), the Regress method name and the warmup file. The
servers, the clients, the evaluators, the benchmarks and the tests all use these names.

The Trainer contract is what the pipeline hands the Trainer's run_fn: the custom_config key of
its hyper-parameters.

Plain constants and the one builder of request tf.Examples: importing this module loads no
TensorFlow, so the serving clients use it too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from models import features

# The name TF Serving serves the model under (serving/models.config, REST URLs, clients).
MODEL_NAME = "movielens"

# --- signatures ---------------------------------------------------------------------------------

# Batch scoring (the Evaluator, TF Serving's default): serialized tf.Examples with USER_ID and
# MOVIE_ID (and optionally TIMESTAMP) in, RATING out; never fails on unknown ids.
SERVING_DEFAULT = "serving_default"
# Client-facing rating prediction: USER_ID and MOVIE_ID tensors in, RATING out.
PREDICT_IDS = "predict_ids"
# Client-facing top-k list: USER_ID and K in, MOVIE_IDS, RATINGS and TITLES out ([B, max(k)]).
RECOMMEND = "recommend"
# TF Serving's Regress API: serialized tf.Examples as REGRESS_INPUTS in, REGRESS_OUTPUTS out.
REGRESS = "regress"
SIGNATURES = (SERVING_DEFAULT, PREDICT_IDS, RECOMMEND, REGRESS)

# SignatureDef method names: every signature but REGRESS is a Predict one.
PREDICT_METHOD = "tensorflow/serving/predict"
REGRESS_METHOD = "tensorflow/serving/regress"

# Input keys. The id inputs are the raw features' names, as in the tf.Examples.
EXAMPLES = "examples"  # string [B], SERVING_DEFAULT's serialized tf.Examples
USER_ID = features.USER_ID  # int64 [B]
MOVIE_ID = features.MOVIE_ID  # int64 [B]
# Optional in SERVING_DEFAULT's and REGRESS's tf.Examples: when the rating is (was) given, seconds
# since the epoch, at which the user's drift is taken; without it, "now" (as PREDICT_IDS).
TIMESTAMP = features.TIMESTAMP  # int64
K = "k"  # int32 [B], RECOMMEND's list length per row
REGRESS_INPUTS = "inputs"  # string [B], the Regress API's fixed input name

# Output keys.
RATING = "rating"  # float32 [B], predicted stars (SERVING_DEFAULT, PREDICT_IDS)
MOVIE_IDS = "movie_ids"  # int64 [B, K]
RATINGS = "ratings"  # float32 [B, K], the rating model's prediction of each listed movie
TITLES = "titles"  # string [B, K]
REGRESS_OUTPUTS = "outputs"  # float32 [B], the Regress API's fixed output name

# RECOMMEND refuses a larger k (INVALID_ARGUMENT): a batch's outputs grow with B x max(k), and a
# client asking for a million movies would make every server hold B x catalogue titles.
MAX_K = 1000

# Requests TF Serving replays after loading a version, before serving it (--enable_model_warmup);
# a TFRecord file of PredictionLog protos, relative to the version folder.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")

# --- the Trainer ----------------------------------------------------------------------------------

# The Trainer's custom_config key holding HParams.to_config() (models/trainer.py reads it).
HPARAMS_KEY = "hparams"
# What the Trainer chose on its validation data (the user drift, the popularity weight), as JSON
# in the exported model: models/trainer.py writes it, the run summary and report read it.
CHOICES_FILE = os.path.join("assets.extra", "training_choices.json")
# What makes two exported models the same model (models/identity.py writes it, the Pusher
# compares it): saved_model.pb's function names carry per-process counters, so two runs that
# train the same weights with the same code write different bytes there.
IDENTITY_FILE = os.path.join("assets.extra", "model_identity.txt")
# What a later Trainer needs to warm-start from this model (models/warm_start.py): its HParams
# and the raw user and movie id of each row of its id tables, as JSON.
WARM_START_FILE = os.path.join("assets.extra", "warm_start.json")


# --- tf.Examples ----------------------------------------------------------------------------------

def tf_example(values: Mapping[str, Any]) -> Any:
    """A tf.train.Example of feature name -> a value or a list of values: ints (and bools) as
    int64_list, floats as float_list, str (UTF-8) and bytes as bytes_list. The one builder of
    request tf.Examples (warmup records, the REST adapter, the clients, tests); raises ValueError
    naming the feature for a value of another type or a feature mixing types."""
    # Imported here: clients import this module for its names without loading TensorFlow.
    from tensorflow.core.example import example_pb2

    example = example_pb2.Example()
    for name, value in values.items():
        feature = example.features.feature[name]
        items = value if isinstance(value, Iterable) and not isinstance(value, (str, bytes)) \
            else [value]
        kind = None
        for item in items:
            item_kind, item = _feature_value(name, item)
            if kind not in (None, item_kind):
                raise ValueError(f"Unexpected element type in feature: {name} expecting type: "
                                 f"{kind.split('_')[0]}")
            kind = item_kind
            getattr(feature, kind).value.append(item)
    return example


def _feature_value(name: str, value: Any) -> tuple[str, Any]:
    """(the Feature list field, the value to append) of one value."""
    if isinstance(value, (bool, int, np.integer, np.bool_)):
        return "int64_list", int(value)
    if isinstance(value, (float, np.floating)):
        return "float_list", float(value)
    if isinstance(value, str):
        return "bytes_list", value.encode()
    if isinstance(value, bytes):
        return "bytes_list", value
    raise ValueError(f"Feature: {name} has element with unexpected type: {type(value).__name__}")
