"""Model hyper-parameters: defaults live here, the pipeline passes overrides in custom_config."""

from __future__ import annotations

import dataclasses
from typing import Any

# "bias": mu + b_u + b_m (the Evaluator's baseline); "mf": biased matrix factorisation;
# "neural": MF plus an MLP over the embeddings and the movie's genres and year.
MODEL_TYPES = ("bias", "mf", "neural")
LOSSES = ("mse", "mae", "huber")
# "lazy_adam": Adam that updates only the id-table rows a batch read (models/optimizers.py).
OPTIMIZERS = ("adam", "lazy_adam", "adagrad", "sgd")
# What table_optimizer may name: the optimizers tfrs' CompositeOptimizer can combine.
TABLE_OPTIMIZERS = ("adam", "adagrad", "sgd")
RETRIEVAL_OBJECTIVES = ("users", "pairs")


@dataclasses.dataclass(frozen=True)
class RetrievalHParams:
    """The retrieval stage of `recommend` (models/retrieval.py) and how its list is ordered.

    Defaults were tuned with bench/ranking.py on ml-latest-small (docs/benchmarks.md), selected
    on a validation split cut from the training data.
    """

    # "users": a step is a batch of users, each scored against all movies once, with a random
    # part of their history as the input and the rest as targets (RetrievalModel.cloze_loss);
    # "pairs": a batch of (user, movie) pairs, each scored against all movies, as
    # tfrs.tasks.Retrieval trains. On ml-latest-small "users" gives 0.005-0.012 less NDCG@10
    # for about a tenth of the training time (docs/benchmarks.md, "Retrieval objective");
    # "pairs" was tuned with learning_rate_decay 0.7, max_epochs 12 and early_stopping_patience 2.
    objective: str = "users"
    users_per_batch: int = 64  # objective "users"
    embedding_dim: int = 256
    # Each history entry dropped at random in training: "users"' targets are the dropped ones
    # (0.5, as Mult-DAE's input dropout); "pairs" was tuned with 0.3.
    history_dropout: float = 0.5
    # The Trainer trains the stage once per value on its validation split and keeps the best
    # as history_dropout (retrieval_training.train_retrieval): the best differs between data
    # sets, 0.5 on ml-latest-small, 0.7 on synthetic ones (docs/benchmarks.md, "Retrieval
    # settings on validation data"); each value costs one more training without the refit.
    # Empty: only history_dropout. Empty here, (0.5, 0.7) in TUNED.
    history_dropouts: tuple[float, ...] = ()
    temperature: float = 1.0  # logits are divided by it in the softmax
    # The batch's positives as negatives too, besides all movies (mixed negative sampling).
    in_batch_negatives: bool = False
    # Negatives per batch drawn uniformly from all movies; 0: all movies.
    sampled_negatives: int = 0
    learning_rate: float = 3e-3
    learning_rate_decay: float = 0.97  # the rate is multiplied by this after each epoch
    batch_size: int = 1024  # objective "pairs"
    # Objective "pairs": smaller batches when the data is small, so that an epoch has at least
    # this many steps (a few thousand ratings in batches of 1024 would barely train).
    min_steps_per_epoch: int = 50
    max_epochs: int = 60
    # Early stopping on the validation NDCG@10 of all-movie rankings (seen movies excluded),
    # averaged over the last validation_smoothing epochs; "pairs" was tuned with 1 (no average).
    early_stopping_patience: int = 6
    validation_smoothing: int = 5
    validation_fraction: float = 0.1  # of the training interactions
    # After early stopping, train a fresh model on every training interaction for the best
    # validation epoch count (the held-out tenth is a tenth of the positives); about doubles the
    # retrieval training time (docs/benchmarks.md). The popularity weight is still chosen on
    # the first model's validation.
    refit: bool = True
    # Movies retrieved per user for the ranking stage, which orders them by
    # retrieval logit + rating_weight * predicted stars (0: the retrieval order; chosen among
    # 0-1 on validation NDCG@10, docs/benchmarks.md).
    num_candidates: int = 100
    rating_weight: float = 0.3
    # Serving adds popularity_weight * log(1 + the movie's training ratings) to the retrieval
    # logits: the best of these on the validation NDCG@10 after training (0: none).
    popularity_weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.4, 0.8)
    seed: int = 42

    def __post_init__(self):
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be >= 1, got {self.num_candidates}")
        # custom_config travels as JSON, which turns tuples into lists.
        object.__setattr__(self, "popularity_weights",
                           tuple(float(w) for w in self.popularity_weights))
        if not self.popularity_weights:
            raise ValueError("popularity_weights needs at least one value (0.0: no boost)")
        if self.objective not in RETRIEVAL_OBJECTIVES:
            raise ValueError(f"objective must be one of {RETRIEVAL_OBJECTIVES}, "
                             f"got {self.objective!r}")
        if self.validation_smoothing < 1:
            raise ValueError(f"validation_smoothing must be >= 1 epoch, got "
                             f"{self.validation_smoothing}")
        object.__setattr__(self, "history_dropouts",
                           tuple(float(d) for d in self.history_dropouts))
        for dropout in self.history_dropouts or (self.history_dropout,):
            if not 0.0 <= dropout < 1.0:
                raise ValueError(f"history_dropout must be in [0, 1), got {dropout}")
            if self.objective == "users" and not dropout:
                raise ValueError("objective 'users' needs history_dropout > 0: the dropped "
                                 "entries are its targets")

    @classmethod
    def from_config(cls, config: dict[str, Any] | RetrievalHParams | None
                    ) -> RetrievalHParams | None:
        return _nested_from_config(cls, config)


@dataclasses.dataclass(frozen=True)
class ItemItemHParams:
    """The item-item stage of `recommend` (models/item_item.py, fitted by
    models/item_item_training.py): EDLAE in closed form on the binary training interactions and
    the movies' side features (as pseudo-users), served as each movie's strongest neighbours
    plus a low-rank residual. An alternative to the two-tower RetrievalHParams that ranked 3-4
    NDCG@10 points better on ml-latest-small (docs/benchmarks.md, "Ranking").

    dropout was chosen on validation splits of ml-latest-small and synthetic data
    (docs/benchmarks.md, "Item-item settings on validation data"); l2, the popularity exponent,
    the user weight and the side weight differ between data sets, so the Trainer chooses them
    per run on a holdout (item_item_training.train_item_item).
    """

    # Candidates for the ridge penalty of the solve (in ratings: a movie's weights shrink as if
    # it had l2 more co-occurrences of nothing), each one solve on the holdout's rest.
    l2s: tuple[float, ...] = (100.0, 200.0, 400.0, 800.0)
    # EDLAE's dropout emphasis (Steck 2020): the diagonal penalty grows with each movie's
    # count; 0 is EASE.
    dropout: float = 0.1
    # A user's co-occurrences count |history|^-user_weight: heavy raters dominate less. The
    # first is used while l2 is chosen; the others are then tried at the chosen l2 (a solve
    # each).
    user_weights: tuple[float, ...] = (0.25, 0.0)
    # Scores multiplied by (1 + the movie's ratings)^exponent, the best of these on the holdout
    # (no solve each: they only rescale columns). ml-latest-small chose -0.1; the positive ones
    # are for small data, where popularity is most of what there is to know (a 1,500-rating
    # span of a test fixture ranked below the most-rated list without them).
    popularity_exponents: tuple[float, ...] = (0.0, -0.1, -0.2, 0.25, 0.5)
    # Each side feature of the movies (genres, genre combination, release-year buckets, title
    # words) counts as this many pseudo-users who rated every movie having it
    # (item_item.add_side); the first is used while l2 and the user weight are chosen, the
    # others are then tried at the chosen l2 and the next larger (2 solves each). Validation
    # splits of ml-latest-small gained 3.7-7.2% NDCG@10, synthetic data 0-6% (docs/benchmarks.md,
    # "Side features"); (0.0,) turns side features off.
    side_weights: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0)
    # Widths of the release-year buckets, each a group of side features, in standard
    # deviations of the z-scored year (MovieLens: about a decade and about five years).
    year_buckets: tuple[float, ...] = (0.5, 0.25)
    # Title words shared by at most this share of the movies (at least 2) are side features
    # too: a series' or franchise's words (ml-latest-small: 30 of 9.7k movies); 0: none.
    title_max_share: float = 0.003
    neighbours: int = 200  # per movie, kept exactly (N)
    rank: int = 128  # of the approximation of the rest of B
    # Movies in the dense solve: the most rated ones; the rest score 0 from this stage.
    max_dense: int = 12_000
    # Movies in the holdout's solves that choose l2, the exponent and the user weight: the most
    # rated. The choice on 2,000 lost <= 0.0007 holdout NDCG@10 against the choice on all
    # (validation: ml-latest-small and its time windows, two bench.synthetic shapes), at a
    # tenth of the time (docs/benchmarks.md, "Item-item settings on validation data").
    choice_dense: int = 2_000
    # Holdout users whose top 10 score each of those solves: a seeded sample when the holdout
    # has more (ml-25m: 162k users, the choice's cost grew with them; docs/benchmarks.md,
    # "Item-item settings on validation data").
    choice_users: int = 10_000
    validation_fraction: float = 0.1  # of the training interactions, for l2 and the exponent
    # As RetrievalHParams': the ranking stage orders the top num_candidates by score +
    # rating_weight * predicted stars (0: the item-item order).
    num_candidates: int = 100
    rating_weight: float = 0.0
    seed: int = 42

    def __post_init__(self):
        object.__setattr__(self, "l2s", tuple(float(v) for v in self.l2s))
        object.__setattr__(self, "popularity_exponents",
                           tuple(float(v) for v in self.popularity_exponents))
        object.__setattr__(self, "user_weights", tuple(float(v) for v in self.user_weights))
        object.__setattr__(self, "side_weights", tuple(float(v) for v in self.side_weights))
        object.__setattr__(self, "year_buckets", tuple(float(v) for v in self.year_buckets))
        if not 0.0 <= self.title_max_share < 1.0:
            raise ValueError(f"title_max_share must be in [0, 1), got {self.title_max_share}")
        if not self.side_weights or min(self.side_weights) < 0 or min(self.year_buckets,
                                                                     default=1.0) <= 0:
            raise ValueError(f"side_weights needs at least one value, all >= 0, and "
                             f"year_buckets values > 0, got {self.side_weights}, "
                             f"{self.year_buckets}")
        if not self.user_weights or min(self.user_weights) < 0:
            raise ValueError(f"user_weights needs at least one value, all >= 0, got "
                             f"{self.user_weights}")
        if not self.l2s or min(self.l2s) <= 0:
            raise ValueError(f"l2s needs at least one value, all > 0, got {self.l2s}")
        if not self.popularity_exponents:
            raise ValueError("popularity_exponents needs at least one value (0.0: none)")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.choice_users < 1:
            raise ValueError(f"choice_users must be >= 1, got {self.choice_users}")
        if self.neighbours < 1 or self.rank < 0 or self.num_candidates < 1:
            raise ValueError(f"neighbours and num_candidates must be >= 1 and rank >= 0, got "
                             f"{self.neighbours}, {self.num_candidates}, {self.rank}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got "
                             f"{self.validation_fraction}")

    @classmethod
    def from_config(cls, config: dict[str, Any] | ItemItemHParams | None
                    ) -> ItemItemHParams | None:
        return _nested_from_config(cls, config)


def _nested_from_config(cls: type, config: Any) -> Any:
    """A nested hyper-parameter dataclass from its custom_config dict (JSON), as it is, or
    None; unknown keys are an error."""
    if config is None or isinstance(config, cls):
        return config
    _check_keys(cls, config)
    return cls(**config)


def _check_keys(cls: type, config: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(known)}")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyper-parameters of the rating models and their training loop.

    The defaults are the values tuned with bench/accuracy.py on ml-latest-small for the mf and
    neural models (docs/benchmarks.md); TUNED below says what each model type changes of them,
    and `tuned(model_type)` is what the pipeline trains.
    """

    model_type: str = "mf"
    embedding_dim: int = 64
    l2: float = 0.02  # per-example L2 on the factors and biases used in a batch
    squash: bool = False  # mf only: sigmoid the output into the rating range
    implicit: bool = False  # mf, neural: add SVD++ implicit feedback (the user's rated movies)
    hidden_units: tuple[int, ...] = (128, 64)  # neural only
    dropout: float = 0.3  # neural only
    loss: str = "mse"
    # lazy_adam: Adam on the rows a batch read of each id table; tf_keras 2.16's Adam rewrites
    # every row and both moment slots at each step, which made an epoch 5x slower at 5M
    # ratings, with equal or better validation RMSE on four data sets (docs/benchmarks.md,
    # "Sparse table updates", issue 22).
    optimizer: str = "lazy_adam"
    learning_rate: float = 3e-3
    # The id tables' own optimizer (the embeddings, SVD++'s item factors), "" for `optimizer`
    # everywhere: "adagrad" or "sgd" for the tables, `optimizer` (trainer.make_optimizer) for
    # the rest, whose rate ReduceLROnPlateau cuts. Off: it cost validation RMSE where
    # lazy_adam did not (docs/benchmarks.md, "Sparse table updates").
    table_optimizer: str = ""
    table_learning_rate: float = 1.0
    # 2048: within seed noise of 1024's validation RMSE on the small sets, better at 1M ratings,
    # an epoch 1.2x faster there; 4096 lost 0.003 on ml-latest-small (docs/benchmarks.md).
    batch_size: int = 2048
    max_epochs: int = 40
    early_stopping_patience: int = 3
    # Early stopping and the plateau's rate cut count an epoch as better only when it lowers the
    # validation RMSE by more than this many stars (Keras' min_delta): at 5M ratings, with no
    # minimum, early stopping ran 9 more epochs that gained 0.0001 in all (docs/benchmarks.md).
    early_stopping_min_gain: float = 1e-4
    # Epochs without improvement before the learning rate is cut to a third; 0: never.
    reduce_lr_patience: int = 1
    # Of the train split, held out at random for early stopping and the drift's choice.
    validation_fraction: float = 0.05
    # After training, each user's offset at a time t: the shrunk mean residual of their `window`
    # training ratings nearest to t (models/base.py, UserDrift). Needs the training ratings'
    # timestamps. serving_default and regress take t from the tf.Example's timestamp (the
    # Evaluator's examples have one); without one, and in predict_ids and recommend, t is "now"
    # (the user's last ratings) (docs/benchmarks.md, "User drift"). Whether it helps, and with
    # which window and shrinkage, differs between data sets (it cost 0.02 of known-user MAE on
    # a release where ml-latest-small's best setting was used), so the Trainer chooses per run
    # on its validation holdout among these windows x shrinkages, and keeps the drift only when
    # it lowers the validation RMSE by at least drift_min_gain stars (trainer.choose_drift).
    # Empty: no drift. Off here, on in TUNED for mf and neural.
    drift_windows: tuple[int, ...] = ()
    drift_shrinkages: tuple[float, ...] = (5.0,)
    drift_min_gain: float = 0.001
    # A user the model has never seen is predicted each movie's mean rating, shrunk toward the
    # global mean by one of these (models/new_users.py), chosen per run on the training data's
    # new users: those who first rated in its newest new_user_validation_fraction, or, with
    # fewer than new_user_min_ratings of their ratings, that fraction of the users held out
    # (trainer.train). Empty: the model's own fallback, mu + b_m (plus content for neural),
    # which is fitted net of the raters' biases and was less accurate than the bias baseline on
    # new users (docs/benchmarks.md, "New users"). Off here, on in TUNED for mf and neural.
    new_user_shrinkages: tuple[float, ...] = ()
    new_user_validation_fraction: float = 0.1
    new_user_min_ratings: int = 200
    seed: int = 42
    # The first stage of `recommend`, at most one of: the item-item stage, the two-tower
    # retrieval model. Neither: recommend ranks the catalogue by predicted rating.
    item_item: ItemItemHParams | None = None
    retrieval: RetrievalHParams | None = None

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.table_optimizer and self.table_optimizer not in TABLE_OPTIMIZERS:
            raise ValueError(f"table_optimizer must be '' or one of {TABLE_OPTIMIZERS}, got "
                             f"{self.table_optimizer!r}")
        if self.table_optimizer and self.optimizer not in TABLE_OPTIMIZERS:
            raise ValueError(f"with a table_optimizer, optimizer must be one of "
                             f"{TABLE_OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        # custom_config travels as JSON, which turns tuples into lists.
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))
        object.__setattr__(self, "drift_windows", tuple(int(w) for w in self.drift_windows))
        object.__setattr__(self, "drift_shrinkages",
                           tuple(float(s) for s in self.drift_shrinkages))
        if any(w < 1 for w in self.drift_windows) or any(s < 0 for s in self.drift_shrinkages):
            raise ValueError(f"drift_windows must be >= 1 and drift_shrinkages >= 0, got "
                             f"{self.drift_windows} and {self.drift_shrinkages}")
        object.__setattr__(self, "new_user_shrinkages",
                           tuple(float(s) for s in self.new_user_shrinkages))
        if any(s < 0 for s in self.new_user_shrinkages):
            raise ValueError(f"new_user_shrinkages must be >= 0, got {self.new_user_shrinkages}")
        if not 0.0 < self.new_user_validation_fraction < 1.0:
            raise ValueError("new_user_validation_fraction must be in (0, 1), got "
                             f"{self.new_user_validation_fraction}")
        if self.drift_windows and not self.drift_shrinkages:
            raise ValueError("drift_windows needs at least one of drift_shrinkages")
        object.__setattr__(self, "retrieval", RetrievalHParams.from_config(self.retrieval))
        object.__setattr__(self, "item_item", ItemItemHParams.from_config(self.item_item))
        if self.retrieval is not None and self.item_item is not None:
            raise ValueError("recommend has one first stage: set item_item or retrieval, not "
                             "both")

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> HParams:
        """Builds HParams from a Trainer custom_config; unknown keys are an error, not ignored."""
        config = dict(config or {})
        _check_keys(cls, config)
        return cls(**config)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# What each model type changes of HParams' defaults: the configuration the pipeline trains (see
# `tuned`; pipeline/configs.py picks the type). mf and neural recommend with the item-item stage
# (ItemItemHParams: it ranked 4 NDCG@10 points above the two-tower retrieval model on
# ml-latest-small, docs/benchmarks.md "Ranking"; RetrievalHParams(history_dropouts=(0.5, 0.7))
# is the two-tower's tuned setting), and add the users' drift (see
# HParams.drift_windows) and the new users' ratings (HParams.new_user_shrinkages). bias is the
# Evaluator's RMSE baseline, the textbook mu + b_u + b_m, and ranks the catalogue by predicted
# rating; it keeps the steps it was always trained with, and neither, so that the reference of
# the blessing rules does not move.
_AFTER_TRAINING = {"drift_windows": (10, 25, 50), "drift_shrinkages": (5.0, 20.0),
                   "new_user_shrinkages": (1.0, 2.0, 5.0, 10.0, 25.0, 50.0)}
_FIRST_STAGE = {"item_item": ItemItemHParams()}
TUNED: dict[str, dict[str, Any]] = {
    "bias": {"optimizer": "adam", "learning_rate": 1e-2, "batch_size": 4096,
             "reduce_lr_patience": 0, "early_stopping_min_gain": 0.0},
    "mf": {"l2": 0.03, **_FIRST_STAGE, **_AFTER_TRAINING},
    "neural": {**_FIRST_STAGE, **_AFTER_TRAINING},
}


def tuned(model_type: str, **overrides: Any) -> HParams:
    """The tuned hyper-parameters of a model type (TUNED), with `overrides` on top."""
    if model_type not in TUNED:
        raise ValueError(f"unknown model_type {model_type!r}; known: {sorted(TUNED)}")
    return HParams(model_type=model_type, **{**TUNED[model_type], **overrides})
