"""The retrieval stage's history dropout is chosen per run on the Trainer's validation split
(retrieval_training.train_retrieval with RetrievalHParams.history_dropouts): one model per
value, the best validation NDCG@10 kept, every value's score recorded for the run's choices."""

import dataclasses

from test_retrieval import N_MOVIES, N_USERS, RETRIEVAL, planted_interactions

from models import retrieval_training


def test_the_kept_dropout_is_the_best_on_validation_and_every_score_is_recorded():
    data, _ = planted_interactions()
    hp = dataclasses.replace(RETRIEVAL, history_dropouts=(0.2, 0.9), refit=False, max_epochs=8,
                             validation_smoothing=1)
    model = retrieval_training.train_retrieval(hp, N_USERS, N_MOVIES, data, verbose=0)
    scores = model.history_dropout_ndcg
    assert set(scores) == {"0.2", "0.9"}
    best = max(scores, key=scores.get)
    assert model.validation_ndcg == scores[best]
    # No refit: the model served is the best trial's own, built with the kept dropout.
    assert model.history_dropout == float(best)
    # Each trial is its own seeded training: the one value alone gives the same score.
    alone = retrieval_training.train_retrieval(
        dataclasses.replace(hp, history_dropouts=(float(best),)), N_USERS, N_MOVIES, data,
        verbose=0)
    assert alone.validation_ndcg == scores[best]
