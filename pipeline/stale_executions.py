"""Executions an interrupted run left RUNNING in ML Metadata, marked FAILED by the next run.

A run killed mid-step (SIGKILL, a lost machine) never finishes its executions: ML Metadata keeps
them RUNNING for ever, so lineage queries and tools reading the store show a step still in
progress, and the only way out was `make clean`. The local runner holds the output folder's run
lock (pipeline/run_lock.py) when it calls `fail_stale`, so no other run can own a RUNNING
execution of that store then: each is an interrupted run's, and is marked FAILED with the time
and a reason in its custom properties. The rerun then executes those steps again (TFX's cache
only reuses COMPLETE or CACHED executions).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

REASON = "interrupted: left RUNNING by a run that did not finish; marked FAILED by the next run"
UNFINISHED = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)


def fail_stale(metadata_path: Path) -> list[str]:
    """Marks every NEW or RUNNING execution of the SQLite store FAILED; returns their
    "Type #id" names (none when the store does not exist yet)."""
    if not metadata_path.exists():
        return []
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    store = metadata_store.MetadataStore(config)
    stale = [e for e in store.get_executions() if e.last_known_state in UNFINISHED]
    if not stale:
        return []
    now = datetime.datetime.now().isoformat(timespec="seconds")
    types = {t.id: t.name for t in store.get_execution_types_by_id(
        sorted({e.type_id for e in stale}))}
    for execution in stale:
        execution.last_known_state = metadata_store_pb2.Execution.FAILED
        execution.custom_properties["failure_reason"].string_value = REASON
        execution.custom_properties["marked_failed_at"].string_value = now
    store.put_executions(stale)
    return [f"{types.get(e.type_id, 'execution').split('.')[-1]} #{e.id}" for e in stale]
