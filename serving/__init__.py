"""Serving the pushed model: TF Serving container files, a development server that speaks TF
Serving's gRPC and REST APIs, and clients for both (see serving/README.md). The warmup requests
are written with the model, by models/warmup.py."""

import models  # noqa: F401 - selects Keras 2 before anything here imports TensorFlow
