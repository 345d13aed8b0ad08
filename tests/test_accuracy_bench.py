"""bench/accuracy.py --served: its served path is the exported serving_default, fed each test
rating's timestamp, and gives the in-process predictions, on the generated MovieLens fixture."""

import numpy as np
import pytest
from movielens_fixture import write_movielens_fixture

from bench import accuracy
from models import features, trainer


@pytest.mark.parametrize("protocol", ["time80", "rand80"])
def test_served_predictions_equal_the_in_process_ones(tmp_path, protocol):
    ratings, movies = accuracy.load(write_movielens_fixture(tmp_path / "data"))
    train, test = accuracy.split(ratings, protocol)
    encoded = accuracy.encode(train, test, movies)
    in_process, _, hp, model = accuracy.run_ours(
        "mf", encoded, seed=0,
        overrides={"embedding_dim": 4, "max_epochs": 3, "batch_size": 256, "retrieval": None,
                   "drift_min_gain": -1.0})  # the drift kept whatever validation says
    assert model.drift_choice.window and model.user_drift is not None
    served = accuracy.serve(model, encoded, train, test)
    np.testing.assert_allclose(served, in_process, rtol=0, atol=1e-6)
    if protocol == "rand80":
        # Test ratings in the middle of the training data: "now" would predict differently.
        untimed = {k: v for k, v in encoded.test.items() if k != features.TIMESTAMP}
        assert np.abs(trainer.predict_stars(model, untimed) - served).max() > 1e-3
