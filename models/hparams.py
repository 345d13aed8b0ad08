"""Model hyper-parameters: defaults live here, the pipeline passes overrides in custom_config."""

from __future__ import annotations

import dataclasses
from typing import Any

# "bias": mu + b_u + b_m (the Evaluator's baseline); "mf": biased matrix factorisation;
# "neural": MF plus an MLP over the embeddings and the movie's genres and year.
MODEL_TYPES = ("bias", "mf", "neural")
LOSSES = ("mse", "mae", "huber")
OPTIMIZERS = ("adam", "adagrad", "sgd")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyper-parameters of the models and their training loop.

    Defaults were tuned with bench/accuracy.py on ml-latest-small (docs/benchmarks.md).
    """

    model_type: str = "mf"
    embedding_dim: int = 32
    l2: float = 0.02  # per-example L2 on the factors and biases used in a batch
    squash: bool = False  # mf only: sigmoid the output into the rating range
    implicit: bool = False  # mf, neural: add SVD++ implicit feedback (the user's rated movies)
    hidden_units: tuple[int, ...] = (64, 32)  # neural only
    dropout: float = 0.2  # neural only
    loss: str = "mse"
    optimizer: str = "adam"
    learning_rate: float = 1e-2
    batch_size: int = 4096
    max_epochs: int = 40
    early_stopping_patience: int = 3
    validation_fraction: float = 0.05  # of the train split, held out for early stopping
    seed: int = 42

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        # custom_config travels as JSON, which turns tuples into lists.
        object.__setattr__(self, "hidden_units", tuple(int(u) for u in self.hidden_units))

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> HParams:
        """Builds HParams from a Trainer custom_config; unknown keys are an error, not ignored."""
        config = dict(config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown hyper-parameters {unknown}; known: {sorted(known)}")
        return cls(**config)

    def to_config(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
