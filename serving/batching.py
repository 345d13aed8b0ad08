"""Server-side batching for the development server, like TF Serving's --enable_batching.

Requests for the same signature that arrive while the model is busy are merged into one run: the
inputs are concatenated along dimension 0 and the outputs split again by each request's rows. A
lone request runs at once, on its own thread (no batching delay, no thread hand-off). Under load
the thread whose request is at the head of the queue runs the next batch and hands the
duty on when its own request is done, so nobody runs other requests' batches for long.

A merged run multiplies matrices of another shape than a lone request's, which may sum in another
order: a row's output can differ from a lone run's in its last bit, as under TF Serving's batching.

A request of more rows than `max_rows` is refused with INVALID_ARGUMENT, as TF Serving's batching
refuses a task larger than its max_batch_size: it would not fit a batch, and it bounds what one
client can make the server hold.

A merged run that fails (one request's bad movie id fails the whole batch) is retried request by
request, so each error reaches the request that caused it and only that one. Signatures whose
outputs are not batched along dimension 0 run request by request.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from serving.errors import too_many_rows

Arrays = dict[str, np.ndarray]


class _Request:
    __slots__ = ("inputs", "rows", "outputs", "error", "finished", "wake")

    def __init__(self, inputs: Arrays, rows: int | None):
        self.inputs = inputs
        self.rows = rows
        self.outputs: Arrays | None = None
        self.error: BaseException | None = None
        self.finished = False
        # Set when the request is finished by another thread's batch, or when its own thread
        # is handed the duty of running batches (then `finished` is still False).
        self.wake = threading.Event()


def batch_rows(inputs: Arrays) -> int | None:
    """The common dimension 0 of all inputs, or None when they have none (not batchable)."""
    sizes = {a.shape[0] if a.ndim else None for a in inputs.values()}
    return sizes.pop() if len(sizes) == 1 and None not in sizes else None  # {} -> None too


class Batcher:
    """Runs `run(inputs) -> outputs` for concurrent callers, merging what queues up."""

    def __init__(self, run: Callable[[Arrays], Arrays], max_rows: int):
        self._run = run
        self.max_rows = max_rows
        self._queue: list[_Request] = []
        self._busy = False
        self._lock = threading.Lock()
        self.batchable = True  # False once the outputs showed no batch dimension
        self.merged_requests = 0

    def __call__(self, inputs: Arrays) -> Arrays:
        rows = batch_rows(inputs)
        if rows is not None and rows > self.max_rows:
            raise too_many_rows(rows, self.max_rows)
        request = _Request(inputs, rows if self.batchable else None)
        if request.rows is None:
            return self._run(inputs)
        with self._lock:
            self._queue.append(request)
            lead = not self._busy
            self._busy = True
        if not lead:
            request.wake.wait()
            if request.finished:
                return self._result(request)
        while not request.finished:
            self._run_next_batch()
        self._hand_on()
        return self._result(request)

    @staticmethod
    def _result(request: _Request) -> Arrays:
        if request.error is not None:
            raise request.error
        return request.outputs

    def _hand_on(self) -> None:
        """The leader's own request is done: the next queued request's thread leads."""
        with self._lock:
            if not self._queue:
                self._busy = False
                return
            successor = self._queue[0]
        successor.wake.set()  # not finished: it runs batches until its own request is

    def _run_next_batch(self) -> None:
        with self._lock:
            batch, rows = [], 0
            while self._queue and (not batch or rows + self._queue[0].rows <= self.max_rows):
                request = self._queue.pop(0)
                batch.append(request)
                rows += request.rows
        if len(batch) == 1:
            self._finish(batch[0])
            return
        self.merged_requests += len(batch)
        try:
            merged = {k: np.concatenate([r.inputs[k] for r in batch])
                      for k in batch[0].inputs}
            outputs = self._run(merged)
        except Exception:  # noqa: BLE001 - retried one by one below: each error to its request
            outputs = None
        if outputs is not None and all(v.ndim and v.shape[0] == rows for v in outputs.values()):
            start = 0
            for request in batch:
                request.outputs = {k: v[start:start + request.rows] for k, v in outputs.items()}
                start += request.rows
                request.finished = True
                request.wake.set()
            return
        if outputs is not None:
            self.batchable = False  # outputs not batched along dimension 0
        for request in batch:
            self._finish(request)

    def _finish(self, request: _Request) -> None:
        try:
            request.outputs = self._run(request.inputs)
        except BaseException as e:  # noqa: BLE001 - delivered to the waiting request
            request.error = e
        request.finished = True
        request.wake.set()
