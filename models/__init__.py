"""Feature definitions, preprocessing, TensorFlow Recommenders models and the exported model's
serving contract (models/contract.py). The bottom layer: it imports none of the other packages.

Importing it selects Keras 2 (tf-keras), which TensorFlow Recommenders needs: TensorFlow reads
TF_USE_LEGACY_KERAS when it is imported, so every package's __init__ imports this one first and
each entry point (the runners, the server, bench, the tests) gets it before TensorFlow. The one
other place is kubeflow/Dockerfile, whose TFX entry point imports TensorFlow before our code.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
