"""Model hyper-parameters: defaults live here, the pipeline passes overrides in custom_config."""

from __future__ import annotations

import dataclasses
from typing import Any

# "bias": global mean + user and movie biases, no factors (the Evaluator's baseline).
MODEL_TYPES = ("mf", "bias")


@dataclasses.dataclass(frozen=True)
class HParams:
    """Hyper-parameters of the models and their training loop.

    Defaults were tuned on ml-latest-small's time split (README, "Results and timings").
    """

    model_type: str = "mf"
    embedding_dim: int = 32
    l2: float = 0.02  # per-example L2 on the factors and biases used in a batch
    squash: bool = False  # sigmoid the output into the rating range
    learning_rate: float = 1e-2
    batch_size: int = 4096
    max_epochs: int = 40
    early_stopping_patience: int = 3
    validation_fraction: float = 0.05  # of the train split, held out for early stopping
    seed: int = 42

    def __post_init__(self):
        if self.model_type not in MODEL_TYPES:
            raise ValueError(f"model_type must be one of {MODEL_TYPES}, got {self.model_type!r}")

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
