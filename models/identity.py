"""A digest of what an exported model is, written into it by the Trainer: two models with the
same digest give the same predictions, so the Pusher does not push a retrain of the serving
model as a new version (components/atomic_pusher.py).

The files' bytes cannot say it: saved_model.pb (and fingerprint.pb, a hash of it) name each
traced function and hash table after a counter of the process that exported it, which differs
between two runs of the same pipeline, and the checkpoint's object graph records the layers'
names, which count up within a process. The graph is a function of the code that built it and
the library versions, so the digest covers: the value of every variable by its checkpoint key,
every other file of the export but those two (assets, warmup requests, training choices), the
source of the models package, and the versions of TensorFlow and TensorFlow Recommenders.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import tensorflow as tf
import tensorflow_recommenders as tfrs

from models.contract import IDENTITY_FILE

# Written from the code and the other files: not part of the digest.
_DERIVED = ("saved_model.pb", "fingerprint.pb", IDENTITY_FILE)
_SOURCE = Path(__file__).resolve().parent
_VARIABLES = "variables"  # the checkpoint: its values count, not its bytes
_OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"


def code_digest() -> str:
    """sha256 of the models package's .py files (names and contents) and the library versions."""
    digest = hashlib.sha256(f"tf {tf.__version__} tfrs {tfrs.__version__}\0".encode())
    for path in sorted(_SOURCE.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def variables_digest(export_dir: str) -> str:
    """sha256 of the checkpoint's variables, each key and value (the object graph left out)."""
    digest = hashlib.sha256()
    prefix = os.path.join(export_dir, _VARIABLES, "variables")
    if not tf.io.gfile.glob(prefix + ".index"):
        return digest.hexdigest()
    reader = tf.train.load_checkpoint(prefix)
    for key in sorted(reader.get_variable_to_shape_map()):
        if key != _OBJECT_GRAPH:
            value = reader.get_tensor(key)
            digest.update(f"{key} {value.dtype} {value.shape}\0".encode() + value.tobytes())
    return digest.hexdigest()


def model_digest(export_dir: str) -> str:
    """The export's identity: code_digest, variables_digest and every other file but _DERIVED,
    by relative name."""
    digest = hashlib.sha256(f"{code_digest()}\0{variables_digest(export_dir)}\0".encode())
    for directory, _, files in sorted(tf.io.gfile.walk(export_dir)):
        for name in sorted(files):
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, export_dir)
            if relative in _DERIVED or relative.startswith(_VARIABLES + os.sep):
                continue
            with tf.io.gfile.GFile(path, "rb") as f:
                content = hashlib.sha256(f.read()).digest()
            digest.update(relative.encode() + b"\0" + content)
    return digest.hexdigest()


def write(export_dir: str) -> str:
    """Writes model_digest into the export as contract.IDENTITY_FILE; returns it. Call it
    last, once every other file of the export is written."""
    value = model_digest(export_dir)
    path = os.path.join(export_dir, IDENTITY_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(value + "\n")
    return value
