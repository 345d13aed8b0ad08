"""Benchmarks, run as modules from the repository root: `python -m bench.accuracy` etc."""

import models  # noqa: F401 - selects Keras 2 before anything here imports TensorFlow
