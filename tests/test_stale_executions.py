"""An interrupted run's executions left RUNNING in ML Metadata are marked FAILED by the next run
(pipeline/stale_executions.py); finished ones are left alone."""

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline import stale_executions

Execution = metadata_store_pb2.Execution


def _store(path):
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    sqlite = metadata_store_pb2.SqliteMetadataSourceConfig
    config.sqlite.connection_mode = sqlite.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def test_running_and_new_executions_are_marked_failed_and_finished_ones_kept(tmp_path):
    path = tmp_path / "metadata.sqlite"
    assert stale_executions.fail_stale(path) == []  # no store yet: nothing, and none created
    assert not path.exists()
    store = _store(path)
    trainer = store.put_execution_type(metadata_store_pb2.ExecutionType(
        name="tfx.components.trainer.component.Trainer"))
    states = [Execution.COMPLETE, Execution.RUNNING, Execution.CACHED, Execution.NEW,
              Execution.FAILED]
    ids = store.put_executions([Execution(type_id=trainer, last_known_state=s) for s in states])
    marked = stale_executions.fail_stale(path)
    assert marked == [f"Trainer #{ids[1]}", f"Trainer #{ids[3]}"]
    after = {e.id: e for e in _store(path).get_executions_by_id(ids)}
    assert [after[i].last_known_state for i in ids] == [
        Execution.COMPLETE, Execution.FAILED, Execution.CACHED, Execution.FAILED,
        Execution.FAILED]
    assert after[ids[1]].custom_properties["failure_reason"].string_value.startswith(
        "interrupted")
    assert "failure_reason" not in after[ids[4]].custom_properties  # failed on its own
    assert stale_executions.fail_stale(path) == []  # a second call finds nothing left
