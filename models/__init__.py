"""Feature definitions, preprocessing, TensorFlow Recommenders models and the exported model's
serving contract (models/contract.py). The bottom layer: it imports none of the other packages."""
