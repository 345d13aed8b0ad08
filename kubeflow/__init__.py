"""Kubeflow Pipelines: the pipeline image (Dockerfile) and `python -m kubeflow.submit`."""
