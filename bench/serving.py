"""Benchmark: latency and throughput of the served model, gRPC vs REST vs an in-process call.

    make run                        # push a model trained on ml-latest-small (serving_model/)
    .venv/bin/python -m bench.serving [--seconds 5] [--soak-seconds 30] [--concurrency 1 8 32]

Starts the development server (python -m serving.server) on loopback with the newest pushed
version, then for each workload -- predict 1 pair, predict 100 pairs, recommend k=10 over the
whole catalogue (when the model has the recommend signature), and over gRPC and REST the model
status call, which runs no model (the transport's floor) -- and each transport runs 1, 8 and
32 concurrent clients: serving.client.Client over gRPC and over REST, each client keeping its
connection open, and the same call in-process (serving.model_manager.Servable: the server's own
code path without a network). Clients run in 4 worker processes (threads within), started once
per transport, so the load generator is not one GIL. The 32-client predict runs last
--soak-seconds. "grpc naive" is a reference: a thread-per-request gRPC server written the
obvious way (tf.make_ndarray, a keyword call of the signature, tf.make_tensor_proto).

Writes bench/results/serving.json and the "Serving" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench import docs  # noqa: E402
from models import contract  # noqa: E402
from pipeline import configs  # noqa: E402

REPO = configs.REPO_ROOT

RESULTS = REPO / "bench" / "results" / "serving.json"
WORKERS = 4
WARMUP_S = 1.0
# "model status" runs no model: the transport's own floor (gRPC GetModelStatus, REST GET status).
WORKLOADS = ("predict 1 pair", "predict 100 pairs", "recommend k=10", "model status")
TRANSPORTS = ("in-process", "grpc", "rest")

# --- worker processes (spawned: no TensorFlow state inherited) --------------------------------

_STATE: dict = {}


def _init_worker(transport: str, port: int | None, model_dir: str, users: list[int],
                 movies: list[int]) -> None:
    if transport != "in-process":
        from serving.client import _protos_without_tensorflow
        _protos_without_tensorflow()  # clients need the protos only; start in a second
    _STATE.update(transport=transport, port=port, model_dir=model_dir, users=users,
                  movies=movies)
    if transport == "in-process":
        from serving.model_manager import Servable
        _STATE["servable"] = Servable(contract.MODEL_NAME, 0, model_dir)


def _caller(workload: str):
    """A function making one call of the workload with fresh random ids, on its own connection."""
    import numpy as np

    users, movies, transport = _STATE["users"], _STATE["movies"], _STATE["transport"]
    rng = random.Random()
    n = 100 if "100" in workload else 1

    def ids():
        return (np.array(rng.choices(users, k=n), np.int64),
                np.array(rng.choices(movies, k=n), np.int64))

    if transport == "in-process":
        servable = _STATE["servable"]
        if workload.startswith("recommend"):
            return lambda: servable.predict(contract.RECOMMEND, {
                contract.USER_ID: np.array([rng.choice(users)], np.int64),
                contract.K: np.array([10], np.int32)})

        def predict():
            u, m = ids()
            return servable.predict(contract.PREDICT_IDS, {contract.USER_ID: u,
                                                           contract.MOVIE_ID: m})
        return predict
    if transport == "grpc naive":
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        from serving import tensors
        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{_STATE['port']}"))

        def naive():
            u, m = ids()
            request = tensors.predict_request(contract.MODEL_NAME, contract.PREDICT_IDS,
                                              {contract.USER_ID: u, contract.MOVIE_ID: m})
            return stub.Predict(request, timeout=10)
        return naive
    from serving.client import Client
    client = Client(transport, port=_STATE["port"], timeout=10, retries=0)
    if workload == "model status":
        return client.status
    if workload.startswith("recommend"):
        return lambda: client.recommend(rng.choice(users), 10)
    return lambda: client.predict(list(zip(*ids(), strict=True)))


def _run_cell(args: tuple[str, int, float, float]) -> dict:
    """Runs `threads` clients from start_at - WARMUP_S until end_at; latencies in [start, end)."""
    workload, threads, start_at, end_at = args
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client_loop():
        try:
            call = _caller(workload)
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            with lock:
                errors.append(f"setup: {type(e).__name__}: {e}")
            return
        mine, failed = [], []
        while True:
            t0 = time.time()
            if t0 >= end_at:
                break
            try:
                call()
            except Exception as e:  # noqa: BLE001 - every failure counts
                failed.append(f"{type(e).__name__}: {e}")
                continue
            if t0 >= start_at:
                mine.append(time.time() - t0)
        with lock:
            latencies.extend(mine)
            errors.extend(failed)

    pool = [threading.Thread(target=client_loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"latencies": latencies, "errors": errors}


# --- the naive reference server -----------------------------------------------------------------

def naive_server(model_dir: str) -> None:
    """gRPC Predict written the obvious way; prints its port, serves until killed."""
    from concurrent import futures

    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    model = tf.saved_model.load(model_dir)

    class Naive(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            signature = model.signatures[request.model_spec.signature_name
                                         or contract.SERVING_DEFAULT]
            outputs = signature(**{k: tf.constant(tf.make_ndarray(v))
                                   for k, v in request.inputs.items()})
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(16))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Naive(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(json.dumps({"grpc_port": port}), flush=True)
    server.wait_for_termination()


# --- orchestration ------------------------------------------------------------------------------

def _start(cmd: list[str]) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"{' '.join(cmd)} exited before serving (exit {proc.wait()})")
    return proc, json.loads(line)


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure(transport: str, port: int | None, model_dir: str, users: list[int],
            movies: list[int], cells: list[tuple[str, int, float]]) -> list[dict]:
    context = mp.get_context("spawn")
    results = []
    with context.Pool(WORKERS, _init_worker, (transport, port, model_dir, users, movies)) as pool:
        pool.map(time.sleep, [0.1] * WORKERS)  # every worker initialised before timing starts
        for workload, clients, seconds in cells:
            start_at = time.time() + 0.5 + WARMUP_S
            end_at = start_at + seconds
            load = os.getloadavg()[0]  # what else ran: the cores are shared
            shares = [clients // WORKERS + (i < clients % WORKERS) for i in range(WORKERS)]
            parts = pool.map(_run_cell, [(workload, n, start_at, end_at) for n in shares if n],
                             chunksize=1)
            latencies = sorted(x for p in parts for x in p["latencies"])
            errors = [e for p in parts for e in p["errors"]]
            row = {"workload": workload, "transport": transport, "clients": clients,
                   "seconds": seconds, "requests": len(latencies), "errors": len(errors),
                   "first_error": errors[0] if errors else None,
                   "p50_ms": round(_percentile(latencies, 0.5) * 1e3, 3) if latencies else None,
                   "p99_ms": round(_percentile(latencies, 0.99) * 1e3, 3) if latencies else None,
                   "throughput_rps": round(len(latencies) / seconds, 1),
                   "load_1min": round(load, 2)}
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def doc_section(results: dict) -> str:
    """The "Serving" section of docs/benchmarks.md."""
    rows = results["rows"]
    concurrency = sorted({r["clients"] for r in rows})
    head = "| workload | transport | " + " | ".join(
        f"{c} client{'s' if c > 1 else ''}: p50 / p99 ms, req/s" for c in concurrency) + \
        " | errors | load (1 min) |"
    lines = [
        "## Serving",
        "",
        f"`{results['command']}` on {results['machine']}, {results['date']} at commit "
        f"{results['commit']}; model: {results['model']}. Development server "
        "(`python -m serving.server`), clients keeping their connection open "
        f"(serving.client.Client), {results['seconds']} s per cell after {WARMUP_S:.0f} s of "
        f"warmup, the 32-client predict of one pair for {results['soak_seconds']} s. "
        f"Load average before / after: {results['load_before']} / {results['load_after']} "
        "(the machine's 2 cores are shared; clients and server run on them together).",
        "",
        head,
        "|---|---|" + "---:|" * (len(concurrency) + 2),
    ]
    for workload in WORKLOADS:
        for transport in (*TRANSPORTS, "grpc naive"):
            cells = {r["clients"]: r for r in rows
                     if r["workload"] == workload and r["transport"] == transport}
            if not cells:
                continue

            def fmt(r):
                if r is None or r["p50_ms"] is None:
                    return "n/a"
                return f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}, {r['throughput_rps']:,.0f}"
            errors = sum(r["errors"] for r in cells.values())
            loads = [r.get("load_1min") for r in cells.values() if r.get("load_1min") is not None]
            load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "?"
            lines.append(f"| {workload} | {transport} | " + " | ".join(
                fmt(cells.get(c)) for c in concurrency) + f" | {errors} | {load} |")
    floors = {r["transport"]: r["p50_ms"] for r in rows
              if r["workload"] == "model status" and r["clients"] == 1}
    one_pair = {r["transport"]: r["p50_ms"] for r in rows
                if r["workload"] == "predict 1 pair" and r["clients"] == 1}
    notes = list(results.get("notes", []))
    if {"grpc", "rest"} <= floors.keys() and {"grpc", "rest", "in-process"} <= one_pair.keys():
        notes.append(
            f"One client, p50: the model status call, which runs no model, takes "
            f"{floors['grpc']:.2f} ms over gRPC and {floors['rest']:.2f} ms over REST: that is "
            f"each Python server's own round trip. One pair in-process takes "
            f"{one_pair['in-process']:.2f} ms, over gRPC {one_pair['grpc']:.2f} ms and over REST "
            f"{one_pair['rest']:.2f} ms.")
    for note in notes:
        lines += ["", note]
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-base-path", type=Path, default=configs.SERVING_MODEL_DIR)
    parser.add_argument("--data-dir", type=Path, default=configs.DATA_HOME / configs.DATASET,
                        help="the MovieLens folder the model was trained on, for valid ids "
                             "(default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per cell, after warmup")
    parser.add_argument("--soak-seconds", type=float, default=30.0,
                        help="the 32-client predict of one pair (errors must stay zero)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--transports", nargs="+", default=[*TRANSPORTS, "grpc naive"],
                        choices=[*TRANSPORTS, "grpc naive"])
    parser.add_argument("--naive-server", help=argparse.SUPPRESS)  # internal: the reference
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.naive_server)
        return 0

    from serving.model_manager import list_versions, serve_meta_graph

    versions = list_versions(str(args.model_base_path))
    if not versions:
        raise SystemExit(f"no pushed model under {args.model_base_path}: run `make run` first")
    model_dir = str(args.model_base_path / str(versions[-1]))
    signatures = set(serve_meta_graph(model_dir).signature_def)
    workloads = [w for w in WORKLOADS if not w.startswith("recommend")
                 or contract.RECOMMEND in signatures]
    # Ids the model knows: the users and movies of the ratings it was trained on (the catalogue
    # is every movie rated in either split).
    ratings = (args.data_dir / "ratings.csv").read_text().splitlines()[1:]
    users = sorted({int(line.split(",", 1)[0]) for line in ratings})
    movies = sorted({int(line.split(",", 2)[1]) for line in ratings})

    load_before = _load_average()
    rows: list[dict] = []
    for transport in args.transports:
        proc, port = None, None
        try:
            if transport in ("grpc", "rest"):
                proc, ports = _start([sys.executable, "-m", "serving.server", "--model-base-path",
                                      str(args.model_base_path), "--grpc-port", "0",
                                      "--rest-port", "0"])
                port = ports["grpc_port" if transport == "grpc" else "rest_port"]
            elif transport == "grpc naive":
                proc, ports = _start([sys.executable, __file__, "--naive-server", model_dir])
                port = ports["grpc_port"]
            chosen = (["predict 1 pair"] if transport == "grpc naive"
                      else [w for w in workloads if transport != "in-process"
                            or w != "model status"])
            cells = [(w, c, args.soak_seconds if (c == max(args.concurrency)
                                                  and w == "predict 1 pair"
                                                  and transport in ("grpc", "rest"))
                      else args.seconds)
                     for w in chosen for c in args.concurrency]
            rows += measure(transport, port, model_dir, users, movies, cells)
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)

    commit = docs.git_commit()
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    results = {
        "command": "python -m bench.serving " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit,
        "model": f"{args.model_base_path.name} version {versions[-1]} "
                 f"trained on {args.data_dir.name} ({len(users):,} users, {len(movies):,} movies)",
        "seconds": args.seconds, "soak_seconds": args.soak_seconds,
        "load_before": load_before, "load_after": _load_average(), "rows": rows,
    }
    results["notes"] = [
        "Transports run one after another, minutes apart: on a shared machine compare rows "
        "together with their load column (the 1-minute load average when each cell started)."]
    if contract.RECOMMEND not in signatures:
        results["notes"].append("The model has no `recommend` signature: recommend not measured.")
    docs.write_results(RESULTS, results, "serving", doc_section(results),
                       heading="## Serving (bench/serving.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
