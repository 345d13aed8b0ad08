"""TFX's Pusher with atomic pushes: a version folder appears in the serving directory complete or
not at all.

TF Serving polls the base directory and loads the highest numeric folder as soon as it sees it.
TFX 1.16's Pusher executor copies the model straight into `<base>/<version>/` file by file
(saved_model.pb last), so a killed or failing push leaves a numeric folder with part of a model
that TF Serving tries to load, and that stays there. Here the copy goes to a hidden staging folder
beside it, `<base>/.tmp-<version>/` (TF Serving ignores names that are not integers), which is
renamed into place once complete: rename(2) is atomic within one file system. Staging folders of
pushes that died are removed by the next push.

A model identical to the newest version already served is not pushed again: TF Serving would
load the same model under a new number. Identical: the same identity (contract.IDENTITY_FILE,
which the Trainer writes: the weights, assets and the code that built the graph; a retrain of
the same data gives the same one), or, for models without one, the same files byte for byte.
The PushedModel then names that version and carries IDENTICAL_KEY = 1.

Pushes to one base directory take turns under an flock on the directory itself (released by
the kernel when a pusher dies, so a killed push never blocks the next; no lock file for TF
Serving or anyone listing the folder to trip over), which also makes every staging folder found
under the lock a dead push's. Object stores (gs://, s3://) have neither
locks nor atomic renames: there the rename copies object by object and TFX's saved_model.pb-last
order is what a loader can rely on; staging folders are removed there once an hour old.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from absl import logging
from tfx import types
from tfx.components import Pusher
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from models.contract import IDENTITY_FILE

STAGING_PREFIX = ".tmp-"
# PushedModel custom property: 1 when the blessed model was already the newest served version.
IDENTICAL_KEY = "identical_to_served"
SAVED_MODEL_FILE = "saved_model.pb"
# Without a lock (object stores) a staging folder may belong to a push still copying: only
# those older than this are removed. A staging folder's name carries its start time.
REMOTE_STALE_SECONDS = 3600
_STAGING = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)$")


def _is_local(path: str) -> bool:
    return "://" not in path


@contextlib.contextmanager
def _push_lock(base_directory: str) -> Iterator[bool]:
    """Holds the base directory's push lock (local file systems only); yields whether it did."""
    if not _is_local(base_directory):
        yield False
        return
    fd = os.open(base_directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits for another pusher: a push takes seconds
        yield True
    finally:
        os.close(fd)  # releases the lock


def versions(base_directory: str) -> list[int]:
    """The numeric version folders under base_directory, ascending (what TF Serving loads)."""
    names = (n.rstrip("/") for n in fileio.listdir(base_directory))
    return sorted(int(n) for n in names if n.isdigit())


def remove_stale_staging(base_directory: str, locked: bool, now: float) -> list[str]:
    """Removes staging folders of pushes that died; returns their paths."""
    removed = []
    for name in fileio.listdir(base_directory):
        match = _STAGING.match(name.rstrip("/"))
        if match and (locked or int(match.group(1)) < now - REMOTE_STALE_SECONDS):
            path = os.path.join(base_directory, name.rstrip("/"))
            logging.warning("Removing %s, left by a push that did not finish.", path)
            fileio.rmtree(path)
            removed.append(path)
    return removed


def copy_model(model_path: str, destination: str) -> None:
    """Copies a SavedModel folder, saved_model.pb last (as TFX does: loaders wait for it)."""
    io_utils.copy_dir(model_path, destination, deny_regex_patterns=[re.escape(SAVED_MODEL_FILE)])
    saved_model = os.path.join(model_path, SAVED_MODEL_FILE)
    if fileio.exists(saved_model):
        io_utils.copy_file(saved_model, os.path.join(destination, SAVED_MODEL_FILE))


def tree_digest(path: str) -> str:
    """sha256 over a folder's relative file names and contents (fileio: local or remote)."""
    digest = hashlib.sha256()
    for directory, _, files in sorted(fileio.walk(path)):
        for name in sorted(files):
            file_path = os.path.join(directory, name)
            digest.update(os.path.relpath(file_path, path).encode() + b"\0")
            with fileio.open(file_path, "rb") as f:
                digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def served_copy(model_path: str, base_directory: str) -> tuple[str, str] | None:
    """(folder, version) of the newest served version if it holds exactly model_path's files."""
    if not fileio.exists(base_directory) or not (served := versions(base_directory)):
        return None
    newest = os.path.join(base_directory, str(served[-1]))
    return (newest, str(served[-1])) if same_model(newest, model_path) else None


def _identity(path: str) -> str | None:
    file_path = os.path.join(path, IDENTITY_FILE)
    if not fileio.exists(file_path):
        return None
    with fileio.open(file_path, "rb") as f:
        return f.read().decode().strip()


def same_model(a: str, b: str) -> bool:
    """Whether two model folders are the same model: equal identities when both have one, else
    equal files (tree_digest)."""
    first, second = _identity(a), _identity(b)
    if first is not None and second is not None:
        return first == second
    return tree_digest(a) == tree_digest(b)


def push_atomically(model_path: str, base_directory: str,
                    clock: Callable[[], float] = time.time) -> tuple[str, str]:
    """Copies model_path to `<base_directory>/<version>/` through a staging folder renamed into
    place; returns (version folder, version). The version is the Unix time (TFX's
    UNIX_TIMESTAMP versioning), or one above the highest existing version if that is not later:
    a new push must be the one TF Serving serves, even within the same second."""
    fileio.makedirs(base_directory)
    with _push_lock(base_directory) as locked:
        now = clock()
        remove_stale_staging(base_directory, locked, now)
        version = str(max([int(now)] + [v + 1 for v in versions(base_directory)]))
        staging = os.path.join(base_directory, STAGING_PREFIX + version)
        serving_path = os.path.join(base_directory, version)
        copy_model(model_path, staging)
        if locked:
            os.rename(staging, serving_path)  # atomic; the version is free under the lock
        else:
            fileio.rename(staging, serving_path, overwrite=False)
    logging.info("Model written to serving path %s.", serving_path)
    return serving_path, version


class AtomicPushExecutor(pusher_executor.Executor):
    """TFX's Pusher executor with the filesystem push made atomic (`push_atomically`); blessing
    checks, the archived copy and the PushedModel's properties are TFX's."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]], exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        model_path = self.GetModelPath(input_dict)
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(
            exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        kind = destination.WhichOneof("destination")
        if kind != "filesystem" or destination.filesystem.versioning not in (
                pusher_pb2.Versioning.AUTO, pusher_pb2.Versioning.UNIX_TIMESTAMP):
            raise NotImplementedError(f"AtomicPushExecutor pushes to a filesystem with Unix-time "
                                      f"versions only, not {destination}")
        base_directory = destination.filesystem.base_directory
        if served := served_copy(model_path, base_directory):
            serving_path, version = served
            logging.info("The blessed model is the one served as version %s already: not pushed "
                         "again.", version)
        else:
            serving_path, version = push_atomically(model_path, base_directory)
        # The archived copy in the PushedModel artifact, as TFX's Pusher makes it.
        io_utils.copy_dir(model_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
        model_push.set_int_custom_property(IDENTICAL_KEY, int(served is not None))
        logging.info("Model pushed to %s.", model_push.uri)


class AtomicPusher(Pusher):
    """TFX's Pusher component with `AtomicPushExecutor`: the same spec, inputs and outputs."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(AtomicPushExecutor)
