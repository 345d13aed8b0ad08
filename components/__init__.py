"""Custom TFX components of the MovieLens pipeline."""

import models  # noqa: F401 - selects Keras 2 before anything here imports TensorFlow
