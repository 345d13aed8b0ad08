"""Atomic pushes (README: Failure modes): a version folder appears in the serving directory
complete or not at all, whether the Pusher is killed or fails mid-copy, and the next push
succeeds and removes what the dead one left."""

import errno
import fcntl
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.utils import proto_utils

from components import atomic_pusher
from serving.model_manager import list_versions

ROOT = Path(__file__).resolve().parent.parent


def fake_saved_model(folder: Path, n_assets: int = 30) -> Path:
    """A SavedModel-shaped folder: what is copied matters here, not what it computes."""
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()
    (folder / "saved_model.pb").write_bytes(b"graph" * 1000)
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(os.urandom(1 << 16))
    for i in range(n_assets):
        (folder / "assets" / f"vocab_{i}.txt").write_text(f"{i}\n" * 100)
    return folder


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def numeric_folders(base: Path) -> list[str]:
    return sorted(p.name for p in base.iterdir() if p.name.isdigit())


def staging_folders(base: Path) -> list[Path]:
    return sorted(p for p in base.iterdir() if p.name.startswith(atomic_pusher.STAGING_PREFIX))


def test_a_push_renames_a_complete_copy_into_a_new_version(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving" / "movielens"
    path, version = atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 1000.5)
    assert (path, version) == (str(base / "1000"), "1000")
    assert tree(base / "1000") == tree(model)
    assert numeric_folders(base) == ["1000"] and staging_folders(base) == []


def test_a_push_in_the_same_second_gets_a_higher_version(tmp_path):
    """TF Serving serves the highest version: the newest push must be it."""
    model = fake_saved_model(tmp_path / "model", n_assets=1)
    base = tmp_path / "serving"
    for _ in range(2):
        atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 1000.0)
    (base / "5").mkdir()  # an older version pushed by hand is below the clock: ignored
    atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 1000.0)
    assert numeric_folders(base) == ["1000", "1001", "1002", "5"]


def test_pushes_to_one_folder_take_turns(tmp_path):
    model = fake_saved_model(tmp_path / "model", n_assets=1)
    base = tmp_path / "serving"
    base.mkdir()
    other_push = os.open(base, os.O_RDONLY)  # another pusher holding the folder's lock
    fcntl.flock(other_push, fcntl.LOCK_EX)
    done = threading.Event()
    push = threading.Thread(target=lambda: (
        atomic_pusher.push_atomically(str(model), str(base)), done.set()))
    push.start()
    try:
        assert not done.wait(1.0), "pushed while another push held the lock"
        assert numeric_folders(base) == [] and staging_folders(base) == []
    finally:
        os.close(other_push)
    assert done.wait(30)
    push.join()
    assert len(numeric_folders(base)) == 1


def test_a_failure_mid_copy_leaves_no_version_and_the_next_push_succeeds(tmp_path, monkeypatch):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    copy, calls = fileio.copy, []

    def copy_until_the_disk_is_full(src, dst, overwrite=False):
        calls.append(dst)
        if len(calls) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", dst)
        copy(src, dst, overwrite)

    monkeypatch.setattr(fileio, "copy", copy_until_the_disk_is_full)
    with pytest.raises(OSError, match="No space left"):
        atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 1000.0)
    assert numeric_folders(base) == []
    assert [p.name for p in staging_folders(base)] == [".tmp-1000"]  # what TF Serving ignores

    monkeypatch.setattr(fileio, "copy", copy)
    path, _ = atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 1001.0)
    assert numeric_folders(base) == ["1001"] and tree(Path(path)) == tree(model)
    assert staging_folders(base) == []  # the dead push's staging folder was removed


# Pushes with every file copy slowed down, and a line printed after each: the test kills the
# process between two copies, as a SIGKILL during a real push of a large model would.
SLOW_PUSH = """
import sys, time
from tfx.dsl.io import fileio
from components import atomic_pusher

copy = fileio.copy
def slow_copy(src, dst, overwrite=False):
    copy(src, dst, overwrite)
    print("copied", dst, flush=True)
    time.sleep(0.2)
fileio.copy = slow_copy
atomic_pusher.push_atomically(sys.argv[1], sys.argv[2])
print("pushed", flush=True)
"""


@pytest.mark.mutation_last  # a fresh interpreter imports TFX: about 15 s
def test_a_pusher_killed_mid_copy_leaves_no_version_and_the_next_push_succeeds(tmp_path):
    model = fake_saved_model(tmp_path / "model")
    base = tmp_path / "serving"
    process = subprocess.Popen([sys.executable, "-c", SLOW_PUSH, str(model), str(base)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    copied = 0
    for line in process.stdout:
        assert not line.startswith("pushed"), "the push finished before it was killed"
        copied += line.startswith("copied")
        if copied == 5:
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait(timeout=60) == -signal.SIGKILL
    process.stdout.close()

    # Killed mid-copy: part of the model in the staging folder, no version for TF Serving.
    (staging,) = staging_folders(base)
    assert 0 < len(tree(staging)) < len(tree(model))
    assert numeric_folders(base) == [] and list_versions(str(base)) == []

    # The dead process's lock died with it: the next push neither waits nor fails.
    path, version = atomic_pusher.push_atomically(str(model), str(base))
    assert numeric_folders(base) == [version] and tree(Path(path)) == tree(model)
    assert staging_folders(base) == []


def push(model_uri: Path, pushed_uri: Path, base: Path, blessed: bool = True
         ) -> standard_artifacts.PushedModel:
    """Runs the executor on the Model artifact at model_uri with a blessing of `blessed`;
    returns its PushedModel."""
    model = standard_artifacts.Model()
    model.uri = str(model_uri)
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", int(blessed))
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(pushed_uri)
    destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
        base_directory=str(base)))
    atomic_pusher.AtomicPushExecutor().Do(
        {standard_component_specs.MODEL_KEY: [model],
         standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
        {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
        {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(destination)})
    return pushed


def test_the_executor_pushes_a_blessed_model_and_records_where(tmp_path):
    model = tmp_path / "trainer_model"
    fake_saved_model(model / "Format-Serving", n_assets=2)
    base = tmp_path / "serving"
    pushed = push(model, tmp_path / "pushed_model", base)

    (version,) = numeric_folders(base)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_destination") == str(base / version)
    assert pushed.get_string_custom_property("pushed_version") == version
    assert tree(base / version) == tree(model / "Format-Serving")
    assert tree(Path(pushed.uri)) == tree(base / version)  # TFX's archived copy
    assert staging_folders(base) == []
    assert pushed.get_int_custom_property(atomic_pusher.IDENTICAL_KEY) == 0


def test_the_model_already_served_is_not_pushed_again(tmp_path, caplog):
    model = tmp_path / "trainer_model"
    fake_saved_model(model / "Format-Serving", n_assets=2)
    base = tmp_path / "serving"
    first = push(model, tmp_path / "pushed_1", base)
    (version,) = numeric_folders(base)
    # The same files again (a cached Trainer's model, blessed again): no second version.
    caplog.clear()
    # On absl's logger itself: a test run earlier in the process (TensorFlow, Keras) may have
    # raised its level, and the root logger's level alone would not let INFO through.
    with caplog.at_level(logging.INFO, logger="absl"):
        again = push(model, tmp_path / "pushed_2", base)
    assert numeric_folders(base) == [version]
    assert again.get_int_custom_property(atomic_pusher.IDENTICAL_KEY) == 1
    assert again.get_int_custom_property("pushed") == 1
    assert again.get_string_custom_property("pushed_destination") == \
        first.get_string_custom_property("pushed_destination")
    assert again.get_string_custom_property("pushed_version") == version
    # The run log says which version serves it, then where the archived copy went.
    messages = [r.getMessage() for r in caplog.records if r.name == "absl"]
    served = (f"The blessed model is the one served as version {version} already: not pushed "
              "again.")
    pushed = f"Model pushed to {tmp_path / 'pushed_2'}."
    assert served in messages and pushed in messages
    assert messages.index(served) < messages.index(pushed)
    # One byte different is another model.
    (model / "Format-Serving" / "assets" / "vocab_0.txt").write_text("changed")
    changed = push(model, tmp_path / "pushed_3", base)
    assert len(numeric_folders(base)) == 2
    assert changed.get_int_custom_property(atomic_pusher.IDENTICAL_KEY) == 0


def test_the_executor_pushes_nothing_unblessed(tmp_path):
    pushed = push(tmp_path / "trainer_model", tmp_path / "pushed_model", tmp_path / "serving",
                  blessed=False)
    assert pushed.get_int_custom_property("pushed") == 0
    assert not (tmp_path / "serving").exists()


def test_a_destination_other_than_a_filesystem_is_refused(tmp_path):
    model = tmp_path / "trainer_model"
    fake_saved_model(model / "Format-Serving", n_assets=1)
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / "pushed_model")
    blessing = standard_artifacts.ModelBlessing()
    blessing.set_int_custom_property("blessed", 1)
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(model)
    # PushDestination's only kind is a filesystem; one without it names no place to push to.
    with pytest.raises(NotImplementedError,
                       match="AtomicPushExecutor pushes to a filesystem with Unix-time versions "
                             "only, not "):
        atomic_pusher.AtomicPushExecutor().Do(
            {standard_component_specs.MODEL_KEY: [model_artifact],
             standard_component_specs.MODEL_BLESSING_KEY: [blessing]},
            {standard_component_specs.PUSHED_MODEL_KEY: [pushed]},
            {standard_component_specs.PUSH_DESTINATION_KEY: proto_utils.proto_to_json(
                pusher_pb2.PushDestination())})


def with_identity(folder: Path, identity: str) -> Path:
    (folder / "assets.extra").mkdir(parents=True, exist_ok=True)
    (folder / "assets.extra" / "model_identity.txt").write_text(identity)
    return folder


def test_models_with_identities_are_the_same_exactly_when_the_identities_are(tmp_path):
    a = with_identity(fake_saved_model(tmp_path / "a", n_assets=1), "abc\n")
    b = with_identity(fake_saved_model(tmp_path / "b", n_assets=1), "abc")  # other weights
    assert atomic_pusher.same_model(str(a), str(b)) and atomic_pusher.same_model(str(b), str(a))
    c = tmp_path / "c"
    c.mkdir()
    for name, content in tree(a).items():
        (c / name).parent.mkdir(parents=True, exist_ok=True)
        (c / name).write_bytes(content)
    with_identity(c, "abd")  # the same files but the identity
    assert not atomic_pusher.same_model(str(a), str(c))


def test_the_push_lock_is_only_taken_on_local_file_systems(tmp_path):
    with atomic_pusher._push_lock("gs://bucket/serving") as locked:
        assert locked is False
    with atomic_pusher._push_lock(str(tmp_path)) as locked:
        assert locked is True


def test_remote_listings_with_trailing_slashes(monkeypatch, caplog):
    # Object stores list folders as "name/"; their staging folders go once an hour old.
    listing = ["1/", "12/", "3X/", "tmp/", ".tmp-100/", ".tmp-6400/", ".tmp-9000/", ".tmp-5X/"]
    removed = []
    monkeypatch.setattr(atomic_pusher.fileio, "listdir", lambda path: listing)
    monkeypatch.setattr(atomic_pusher.fileio, "rmtree", removed.append)
    assert atomic_pusher.versions("gs://b/m") == [1, 12]
    caplog.set_level(logging.WARNING, logger="absl")
    # now - 3600 = 6400: older staging folders go, one exactly an hour old stays.
    assert atomic_pusher.remove_stale_staging("gs://b/m", locked=False, now=10_000) == [
        "gs://b/m/.tmp-100"]
    assert removed == ["gs://b/m/.tmp-100"]
    assert [r.getMessage() for r in caplog.records] == [
        "Removing gs://b/m/.tmp-100, left by a push that did not finish."]
    # Under the lock (local): every staging folder is a dead push's.
    removed.clear()
    assert atomic_pusher.remove_stale_staging("gs://b/m", locked=True, now=0) == [
        "gs://b/m/.tmp-100", "gs://b/m/.tmp-6400", "gs://b/m/.tmp-9000"]


def test_a_push_without_a_lock_renames_through_fileio_and_keeps_recent_staging(
        tmp_path, monkeypatch, caplog):
    # As on an object store: no lock, so only staging folders an hour old are a dead push's.
    monkeypatch.setattr(atomic_pusher, "_is_local", lambda path: False)
    model = fake_saved_model(tmp_path / "model", n_assets=2)
    base = tmp_path / "serving"
    (base / ".tmp-100").mkdir(parents=True)
    (base / ".tmp-9990").mkdir()  # another pusher's, 10 s old
    caplog.set_level(logging.INFO, logger="absl")  # other tests may have raised absl's level
    path, version = atomic_pusher.push_atomically(str(model), str(base), clock=lambda: 10_000.0)
    assert (path, version) == (str(base / "10000"), "10000")
    assert tree(Path(path)) == tree(model)
    assert [p.name for p in staging_folders(base)] == [".tmp-9990"]
    assert f"Model written to serving path {path}." in [r.getMessage() for r in caplog.records]


def test_a_push_without_a_lock_never_overwrites_a_version_that_appeared_meanwhile(
        tmp_path, monkeypatch):
    # Another pusher took the same version between the listing and the rename.
    monkeypatch.setattr(atomic_pusher, "_is_local", lambda path: False)
    monkeypatch.setattr(atomic_pusher, "versions", lambda base_directory: [])
    model = fake_saved_model(tmp_path / "model", n_assets=2)
    theirs = tmp_path / "serving" / "10000"
    theirs.mkdir(parents=True)  # empty still: rename(2) alone would replace it
    with pytest.raises(Exception):  # noqa: B017 - fileio's error type depends on the filesystem
        atomic_pusher.push_atomically(str(model), str(tmp_path / "serving"),
                                      clock=lambda: 10_000.0)
    assert list(theirs.iterdir()) == []
