"""serving/batching.py with real threads: merged runs, correct splits, errors kept to the request
that caused them, no batching for a lone caller or for outputs without a batch dimension."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from serving.batching import Batcher, batch_rows
from serving.errors import ServingError

MAX_ROWS = 2048

class Model:
    """Doubles x; a negative value fails the whole run, like a TF InvalidArgument would."""

    def __init__(self, delay: float = 0.01, batched_outputs: bool = True):
        self.delay = delay
        self.batched_outputs = batched_outputs
        self.runs: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, inputs):
        x = inputs["x"]
        with self.lock:
            self.runs.append(len(x))
        time.sleep(self.delay)
        if (x < 0).any():
            raise ServingError("INVALID_ARGUMENT", f"negative x: {x[x < 0].tolist()}")
        if not self.batched_outputs:
            return {"total": np.array(x.sum())}
        return {"y": x * 2, "width": np.full((len(x), 3), len(x))}


def call_concurrently(batcher, inputs_list):
    results = [None] * len(inputs_list)

    def call(i):
        try:
            results[i] = batcher(inputs_list[i])
        except ServingError as e:
            results[i] = e

    # Daemons under one deadline: a mutant that strands every caller fails in 10 s, not 10 s
    # per thread, and its stuck threads do not keep the process alive.
    threads = [threading.Thread(target=call, args=(i,), daemon=True)
               for i in range(len(inputs_list))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "a caller never got its answer"
    return results


def test_a_lone_request_runs_alone_and_at_once():
    # In a thread under a deadline: a mutant that makes a lone caller wait for a leader fails
    # here in seconds instead of hanging the test.
    model = Model()
    (result,) = call_concurrently(Batcher(model, MAX_ROWS), [{"x": np.array([1, 2])}])
    assert result["y"].tolist() == [2, 4]
    assert model.runs == [2]


def test_requests_one_after_another_each_run_at_once():
    # Each finished request leaves the batcher idle, so the next lone request leads its own
    # run rather than waiting for a leader that will never come (a mutant kept it busy).
    model = Model()
    batcher = Batcher(model, MAX_ROWS)
    done = threading.Event()

    def three_in_a_row():
        for x in ([1], [2, 3], [4]):
            assert batcher({"x": np.array(x)})["y"].tolist() == [2 * v for v in x]
        done.set()

    threading.Thread(target=three_in_a_row, daemon=True).start()
    assert done.wait(timeout=10), "a request after a finished one never ran"
    assert model.runs == [1, 2, 1] and batcher.merged_requests == 0


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows():
    model = Model(delay=0.05)
    batcher = Batcher(model, MAX_ROWS)
    inputs = [{"x": np.arange(i, i + 1 + i % 3)} for i in range(40)]
    results = call_concurrently(batcher, inputs)
    for given, got in zip(inputs, results, strict=True):
        assert got["y"].tolist() == (given["x"] * 2).tolist()
    assert sum(model.runs) == sum(len(i["x"]) for i in inputs)
    assert len(model.runs) < len(inputs) and batcher.merged_requests > 0


def test_an_error_reaches_only_the_request_that_caused_it():
    model = Model(delay=0.05)
    inputs = [{"x": np.array([i])} for i in range(20)]
    inputs[7] = {"x": np.array([-1])}
    results = call_concurrently(Batcher(model, MAX_ROWS), inputs)
    assert isinstance(results[7], ServingError) and "negative" in results[7].message
    assert all(r["y"].tolist() == [2 * i] for i, r in enumerate(results) if i != 7)


def test_batches_respect_max_rows():
    model = Model(delay=0.05)
    batcher = Batcher(model, max_rows=4)
    results = call_concurrently(batcher, [{"x": np.array([1, 2])} for _ in range(12)])
    assert all(r["y"].tolist() == [2, 4] for r in results)
    # Full batches of exactly max_rows: the first request runs alone, the other 11 queue
    # behind it and go two by two.
    assert max(model.runs) == 4
    assert batcher.merged_requests == sum(rows // 2 for rows in model.runs if rows > 2)


def test_a_request_of_more_rows_than_max_rows_is_refused_unrun():
    model = Model()
    with pytest.raises(ServingError) as e:
        Batcher(model, max_rows=4)({"x": np.arange(5)})
    assert e.value.code == "INVALID_ARGUMENT"
    assert e.value.message == "Task size 5 is larger than maximum input batch size 4"
    assert model.runs == []


def test_outputs_without_a_batch_dimension_run_request_by_request():
    model = Model(delay=0.05, batched_outputs=False)
    batcher = Batcher(model, MAX_ROWS)
    results = call_concurrently(batcher, [{"x": np.array([i, 1])} for i in range(10)])
    assert [int(r["total"]) for r in results] == [i + 1 for i in range(10)]
    assert not batcher.batchable
    # From then on each request runs alone: no merged run, not even a failed one.
    runs, merged = len(model.runs), batcher.merged_requests
    results = call_concurrently(batcher, [{"x": np.array([i, 1])} for i in range(6)])
    assert [int(r["total"]) for r in results] == [i + 1 for i in range(6)]
    assert model.runs[runs:] == [2] * 6 and batcher.merged_requests == merged


@pytest.mark.parametrize("inputs", [{"x": np.array(3)}, {"x": np.ones(2), "z": np.ones(3)}])
def test_inputs_without_a_common_batch_dimension_run_as_they_are(inputs):
    calls = []
    batcher = Batcher(lambda given: calls.append(given) or {"n": np.array(7)}, MAX_ROWS)
    results = call_concurrently(batcher, [inputs] * 5)
    assert len(calls) == 5 and all(c is inputs for c in calls)  # each ran alone, unchanged
    assert all(int(r["n"]) == 7 for r in results)


def test_a_request_of_exactly_max_rows_runs():
    model = Model()
    (result,) = call_concurrently(Batcher(model, max_rows=4), [{"x": np.arange(4)}])
    assert result["y"].tolist() == [0, 2, 4, 6] and model.runs == [4]


@pytest.mark.parametrize("inputs, rows", [
    ({"x": np.ones(2), "z": np.ones((2, 3))}, 2),
    ({"x": np.ones(2), "z": np.ones(3)}, None),  # no common dimension 0
    ({"x": np.ones(2), "z": np.array(1)}, None),  # a scalar has none
    ({"x": np.array(1)}, None),
    ({}, None),
])
def test_batch_rows_is_the_common_dimension_0_or_none(inputs, rows):
    assert batch_rows(inputs) == rows
