"""Feature definitions, preprocessing and TensorFlow Recommenders models."""
