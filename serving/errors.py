"""One error type for the server and the clients, carrying a gRPC status code name.

TF Serving reports every failure as a canonical status (the same codes as gRPC and TensorFlow's
errors); its REST API maps them to HTTP statuses with the table below (model_servers/
http_server.cc), and the clients map them back.
"""

from __future__ import annotations

# gRPC status code name -> HTTP status, as TF Serving's REST API answers them.
HTTP_STATUS = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504, "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429, "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501, "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
# The way back, for REST clients: several codes share an HTTP status; the first listed wins.
# 413: a body over the development server's limit, which gRPC answers RESOURCE_EXHAUSTED.
CODE_FOR_HTTP = {status: code for code, status in reversed(list(HTTP_STATUS.items()))} | {
    413: "RESOURCE_EXHAUSTED"}

# TensorFlow's error codes (tf.errors.OpError.error_code) are the gRPC codes, by number.
CODE_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
              "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
              "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
              "UNAUTHENTICATED")


class ServingError(Exception):
    """A failed serving call: `code` is a gRPC status code name ("INVALID_ARGUMENT", ...),
    `message` the server's message, `http_status` the REST status when it came over REST."""

    def __init__(self, code: str, message: str, http_status: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status if http_status is not None else HTTP_STATUS.get(code, 500)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def too_many_rows(rows: int, max_rows: int) -> ServingError:
    """TF Serving's batching's refusal of a request of more rows than a batch holds."""
    return invalid(f"Task size {rows} is larger than maximum input batch size {max_rows}")
