"""The MovieLens TFX pipeline definition and its runners."""

import models  # noqa: F401 - selects Keras 2 before anything here imports TensorFlow
