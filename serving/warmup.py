"""Warmup requests for TF Serving, written into the exported model.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of
PredictionLog protos) after loading a version and before serving it, so the first real requests
do not pay for lazy initialisation (the Transform graph's vocabulary tables, kernel set-up and,
on GPUs, CUDA context and autotuning). The development server (serving/model_manager.py) replays
the same file.

One request per signature and batch size, built from each signature's own inputs; the ids come
from the model's vocabularies (its most frequent users and movies), so every request is valid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import prediction_log_pb2

from models import features
from pipeline import configs
from serving import tensors
from serving.model_manager import REGRESS_METHOD, WARMUP_FILE, serve_meta_graph
from serving.tensors import predict_request, regression_request

_LOG = logging.getLogger(__name__)
BATCH_SIZES = (1, 4)
K = 10


def _vocabulary_head(export_dir: str, vocabulary: str, count: int) -> list[int]:
    path = os.path.join(export_dir, "assets", vocabulary)
    if not tf.io.gfile.exists(path):
        raise ValueError(f"{path} not found: pass the ids for the warmup requests explicitly")
    with tf.io.gfile.GFile(path) as f:
        ids = [int(line.split()[-1]) for line, _ in zip(f, range(count), strict=False)]
    if not ids:
        raise ValueError(f"{path} is empty: pass the ids for the warmup requests explicitly")
    return ids


def _examples(users: Sequence[int], movies: Sequence[int]) -> list[example_pb2.Example]:
    examples = []
    for user, movie in zip(users, movies, strict=True):
        example = example_pb2.Example()
        example.features.feature[features.USER_ID].int64_list.value.append(user)
        example.features.feature[features.MOVIE_ID].int64_list.value.append(movie)
        examples.append(example)
    return examples


def write_warmup_requests(export_dir: str, model_name: str = configs.MODEL_NAME,
                          user_ids: Sequence[int] | None = None,
                          movie_ids: Sequence[int] | None = None,
                          batch_sizes: Sequence[int] = BATCH_SIZES, k: int = K) -> str:
    """Writes <export_dir>/assets.extra/tf_serving_warmup_requests for every signature of the
    SavedModel at export_dir whose inputs it knows (user_id, movie_id, k, serialized tf.Examples);
    returns the file's path. Default ids: the first entries of the model's vocabularies."""
    n = max(batch_sizes)
    users = list(user_ids) if user_ids is not None else _vocabulary_head(
        export_dir, features.USER_VOCAB, n)
    movies = list(movie_ids) if movie_ids is not None else _vocabulary_head(
        export_dir, features.MOVIE_VOCAB, n)
    # Cycle through the ids so that any batch size can be filled.
    users = [int(users[i % len(users)]) for i in range(n)]
    movies = [int(movies[i % len(movies)]) for i in range(n)]

    logs: list[prediction_log_pb2.PredictionLog] = []
    for name, signature in sorted(serve_meta_graph(export_dir).signature_def.items()):
        if name.startswith("__"):  # __saved_model_init_op and the like: not servable
            continue
        for b in batch_sizes:
            examples = _examples(users[:b], movies[:b])
            if signature.method_name == REGRESS_METHOD:
                log = prediction_log_pb2.PredictionLog()
                log.regress_log.request.CopyFrom(
                    regression_request(model_name, name, examples))
                logs.append(log)
                continue
            inputs = {}
            for key, info in signature.inputs.items():
                dtype = tensors.numpy_dtype(info.dtype)
                if key == features.USER_ID:
                    inputs[key] = np.asarray(users[:b], dtype=dtype)
                elif key == features.MOVIE_ID:
                    inputs[key] = np.asarray(movies[:b], dtype=dtype)
                elif key == "k":
                    inputs[key] = np.full(b, k, dtype=dtype)
                elif dtype.kind == "O":
                    inputs[key] = tensors.as_array([e.SerializeToString() for e in examples],
                                                   object)
                else:
                    break
            else:
                log = prediction_log_pb2.PredictionLog()
                log.predict_log.request.CopyFrom(predict_request(model_name, name, inputs))
                logs.append(log)
                continue
            _LOG.warning("No warmup request for signature %s: unknown input %r", name, key)
            break
    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    _LOG.info("Wrote %d warmup requests to %s", len(logs), path)
    return path
