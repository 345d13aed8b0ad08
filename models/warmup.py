"""Warmup requests for TF Serving, written into the exported model (contract.WARMUP_FILE).

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (a TFRecord file of
PredictionLog protos) after loading a version and before serving it, so the first real requests
do not pay for lazy initialisation (the model's id and title hash tables, kernel set-up and, on
GPUs, CUDA context and autotuning). The development server (serving/model_manager.py) replays
the same file.

Built from the serving contract and the model's own ids alone: one request per signature and
batch size, with users and movies the model knows, so every request succeeds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from models import contract

_LOG = logging.getLogger(__name__)
BATCH_SIZES = (1, 4)
K = 10


def warmup_logs(user_ids: Sequence[int], movie_ids: Sequence[int],
                model_name: str = contract.MODEL_NAME,
                batch_sizes: Sequence[int] = BATCH_SIZES, k: int = K
                ) -> list[prediction_log_pb2.PredictionLog]:
    """PredictionLogs for every signature of the contract at each batch size; the ids are cycled
    to fill the largest batch."""
    n = max(batch_sizes)
    users = np.array([user_ids[i % len(user_ids)] for i in range(n)], np.int64)
    movies = np.array([movie_ids[i % len(movie_ids)] for i in range(n)], np.int64)
    logs = []
    for b in batch_sizes:
        examples = [contract.tf_example({contract.USER_ID: int(u), contract.MOVIE_ID: int(m)})
                    for u, m in zip(users[:b], movies[:b], strict=True)]
        inputs = {
            contract.SERVING_DEFAULT: {contract.EXAMPLES: np.array(
                [e.SerializeToString(deterministic=True) for e in examples], object)},
            contract.PREDICT_IDS: {contract.USER_ID: users[:b], contract.MOVIE_ID: movies[:b]},
            contract.RECOMMEND: {contract.USER_ID: users[:b],
                                 contract.K: np.full(b, k, np.int32)},
        }
        for signature, tensors in inputs.items():
            log = prediction_log_pb2.PredictionLog()
            request = log.predict_log.request
            request.model_spec.name, request.model_spec.signature_name = model_name, signature
            for key, value in tensors.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            logs.append(log)
        log = prediction_log_pb2.PredictionLog()
        request = log.regress_log.request
        request.model_spec.name, request.model_spec.signature_name = model_name, contract.REGRESS
        request.input.example_list.examples.extend(examples)
        logs.append(log)
    return logs


def write_warmup_requests(export_dir: str, user_ids: Sequence[int], movie_ids: Sequence[int],
                          model_name: str = contract.MODEL_NAME) -> str:
    """Writes <export_dir>/assets.extra/tf_serving_warmup_requests; returns its path."""
    logs = warmup_logs(user_ids, movie_ids, model_name)
    path = os.path.join(export_dir, contract.WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        # Deterministic: the requests' input maps in a fixed order, so that an identical model
        # gives identical files (the Pusher does not push it again, atomic_pusher).
        for log in logs:
            writer.write(log.SerializeToString(deterministic=True))
    _LOG.info("Wrote %d warmup requests to %s", len(logs), path)
    return path
