"""Two exports of the same model are one model to the Pusher even though saved_model.pb's bytes
differ between processes and the checkpoint's between runs in one process (models/identity.py,
atomic_pusher.same_model); a change of weights, assets or code is a new model."""

import shutil

import tensorflow as tf

from components import atomic_pusher
from models import contract, identity


def _export(path, weights=(1.0, 2.0), graph=b"graph", layer="dense_1"):
    """A folder laid out as an export: a checkpoint of one variable (in a layer whose name
    counts up within a process, as Keras names them), a graph, choices."""
    layer_object = tf.Module(name=layer)
    layer_object.kernel = tf.Variable(weights, name=f"{layer}/kernel")
    tf.train.Checkpoint(model=layer_object).write(str(path / "variables" / "variables"))
    (path / "saved_model.pb").write_bytes(graph)
    (path / "fingerprint.pb").write_bytes(graph[::-1])
    (path / "assets.extra").mkdir()
    (path / contract.CHOICES_FILE).write_text("{}\n")
    return str(path)


def test_the_identity_ignores_the_graphs_bytes_and_covers_weights_assets_and_code(
        tmp_path, monkeypatch):
    first = _export(tmp_path / "1", graph=b"__inference_recommend_49505")
    second = _export(tmp_path / "2", graph=b"__inference_recommend_49487", layer="dense_7")
    assert identity.write(first) == identity.write(second)
    assert atomic_pusher.same_model(first, second)
    assert atomic_pusher.tree_digest(first) != atomic_pusher.tree_digest(second)

    other_weights = _export(tmp_path / "3", weights=(1.0, 2.5))
    identity.write(other_weights)
    assert not atomic_pusher.same_model(first, other_weights)
    other_choices = _export(tmp_path / "4")
    (tmp_path / "4" / contract.CHOICES_FILE).write_text('{"x": 1}\n')
    identity.write(other_choices)
    assert not atomic_pusher.same_model(first, other_choices)

    monkeypatch.setattr(identity, "code_digest", lambda: "other code")
    changed_code = _export(tmp_path / "5")
    identity.write(changed_code)
    assert not atomic_pusher.same_model(first, changed_code)


def test_without_an_identity_on_both_sides_the_files_must_be_equal(tmp_path):
    with_one = _export(tmp_path / "1")
    identity.write(with_one)
    without = str(tmp_path / "2")
    shutil.copytree(with_one, without)
    (tmp_path / "2" / contract.IDENTITY_FILE).unlink()
    assert not atomic_pusher.same_model(with_one, without)  # one side has no identity
    assert atomic_pusher.same_model(without, str(shutil.copytree(without, tmp_path / "3")))
