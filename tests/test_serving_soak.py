"""A soak of the development server (slow: `make test-all`): 32 clients for 60 s, predict and
recommend over gRPC and REST, a new version pushed in the middle of it.

No request may fail, the new version must be served after the push, and the server's memory must
stay flat: its resident set size at the start and the end are reported, and the growth bounded.
The server runs in a process of its own (`python -m serving.server`), as in production, so that
its RSS is its own.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from models import contract
from pipeline import configs
from serving.client import Client
from serving.errors import ServingError

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

CLIENTS = 32  # half over gRPC, half over REST
SECONDS = 60.0
PUSH_AT = 20.0  # seconds into the run
# The fixture (tests/movielens_fixture.py): users 1..100, movies 3, 6, ..., 270.
USERS = range(1, 101)
MOVIES = range(3, 271, 3)
# Growth allowed between the RSS after warmup and at the end: a second version is loaded beside
# the first during the swap, and freed memory is not always returned to the system.
MAX_RSS_GROWTH = 1.5


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def push(version_dir: Path, base_path: Path, version: int) -> None:
    """As a safe pusher does: copy beside the served folder, then rename into place."""
    staging = base_path / f".staging-{version}"
    shutil.copytree(version_dir, staging)
    os.rename(staging, base_path / str(version))


def test_32_clients_for_a_minute_with_a_push_fail_nothing_and_keep_memory_flat(
        pushed_model, tmp_path):
    source_base, _, _ = pushed_model
    (version_dir,) = [p for p in source_base.iterdir() if p.name.isdigit()]
    old = int(version_dir.name)
    new = old + 1
    base_path = tmp_path / contract.MODEL_NAME
    shutil.copytree(version_dir, base_path / str(old))
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-base-path", str(base_path),
         "--grpc-port", "0", "--rest-port", "0", "--poll-seconds", "0.5"],
        cwd=configs.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ports = json.loads(server.stdout.readline())
        assert ports["version"] == old
        errors: list[str] = []
        counts = {"grpc": 0, "rest": 0}
        lock = threading.Lock()
        start = time.monotonic()
        stop_at = start + SECONDS

        def client_loop(transport: str, seed: int) -> None:
            rng = random.Random(seed)
            port = ports["grpc_port" if transport == "grpc" else "rest_port"]
            done = 0
            with Client(transport, port=port, timeout=30, retries=0) as client:
                while time.monotonic() < stop_at:
                    try:
                        if rng.random() < 0.5:
                            pairs = [(rng.choice(USERS), rng.choice(MOVIES))
                                     for _ in range(rng.randint(1, 20))]
                            assert client.predict(pairs).shape == (len(pairs),)
                        else:
                            assert len(client.recommend(rng.choice(USERS), 10)) == 10
                        done += 1
                    except (ServingError, AssertionError) as e:
                        with lock:
                            errors.append(f"{transport}: {e!r}")
            with lock:
                counts[transport] += done

        threads = [threading.Thread(target=client_loop, args=(("grpc", "rest")[i % 2], i))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(5)  # warm: every client connected, every signature run
        rss_start = rss_bytes(server.pid)
        time.sleep(max(0.0, start + PUSH_AT - time.monotonic()))
        push(version_dir, base_path, new)
        with Client("grpc", port=ports["grpc_port"], timeout=30) as monitor:
            while time.monotonic() < stop_at:
                states = {s.version: s.state for s in monitor.status()}
                if states.get(new) == "AVAILABLE":
                    break
                time.sleep(0.2)
            served_after_push = time.monotonic() - start
        for t in threads:
            t.join(timeout=SECONDS + 60)
        rss_end = rss_bytes(server.pid)
        with Client("grpc", port=ports["grpc_port"], timeout=30) as monitor:
            states = {s.version: s.state for s in monitor.status()}
            with Client("rest", port=ports["rest_port"], version=new, timeout=30) as pinned:
                assert pinned.predict([(1, 3)]).shape == (1,)
    finally:
        server.terminate()
        server.wait(timeout=60)

    mb = 1 << 20
    print(f"\nsoak: {counts['grpc']:,} gRPC and {counts['rest']:,} REST requests in "
          f"{SECONDS:.0f} s from {CLIENTS} clients, {len(errors)} failed; version {new} served "
          f"{served_after_push:.1f} s in (pushed at {PUSH_AT:.0f} s); server RSS "
          f"{rss_start / mb:.0f} MB after warmup, {rss_end / mb:.0f} MB at the end")
    assert not errors, f"{len(errors)} failed requests, first: {errors[0]}"
    assert states == {new: "AVAILABLE", old: "END"}
    assert served_after_push < SECONDS
    assert counts["grpc"] > 0 and counts["rest"] > 0
    assert rss_end <= MAX_RSS_GROWTH * rss_start, (rss_start, rss_end)
