"""How the MovieLens ExampleGen splits ratings into train and eval."""

from __future__ import annotations

import dataclasses
from typing import Any

SPLIT_METHODS = ("time", "random", "user_time")
RATINGS_FILE = "ratings.csv"
MOVIES_FILE = "movies.csv"
# A data folder laid out in spans (pipeline/spans.py writes one): movies.csv beside
# span-1/ratings.csv, span-2/ratings.csv, ...; TFX's driver resolves {SPAN} to the newest span.
SPAN_DIR = "span-{SPAN}"
SPAN_PATTERN = f"{SPAN_DIR}/{RATINGS_FILE}"


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Split settings, passed to the executor as execution parameters of the component.

    method: "time" trains on every rating before the (1 - eval_fraction) quantile of timestamps
        and evaluates on the rest (the protocol of the Keras MovieLens article); "random" draws
        each rating into eval with probability eval_fraction, seeded and stable across runners;
        "user_time" evaluates each user's newest eval_fraction of ratings (rounded down, ties in
        time on the eval side; a user with too few ratings only trains), as much of the top-k
        literature does: every user with enough ratings is in both splits, so the top-k rules
        judge hundreds of users where the time split leaves a few dozen.
    max_rejected_fraction: the run fails when more rows than this could not be parsed.
    """

    method: str = "time"
    eval_fraction: float = 0.2
    seed: int = 42
    max_rejected_fraction: float = 0.01

    def __post_init__(self):
        if self.method not in SPLIT_METHODS:
            raise ValueError(f"split method must be one of {SPLIT_METHODS}, got {self.method!r}")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in (0, 1), got {self.eval_fraction}")

    @classmethod
    def from_exec_properties(cls, exec_properties: dict[str, Any]) -> SplitConfig:
        return cls(
            method=exec_properties["split_method"],
            eval_fraction=float(exec_properties["eval_fraction"]),
            seed=int(exec_properties["seed"]),
            max_rejected_fraction=float(exec_properties["max_rejected_fraction"]),
        )
