"""Serving the pushed model: TF Serving container files, warmup requests, a development server
that speaks TF Serving's gRPC and REST APIs, and clients for both (see serving/README.md)."""
