"""Progress of the Trainer's long steps, for the console a person follows.

The training code (models/trainer.py, models/retrieval_training.py, models/item_item_training.py)
calls `report`; it logs one line on the `models.progress` logger whose record carries a
`Progress` in its `progress` attribute. pipeline/local_runner.py's console shows that
`Progress.text` (at most every few seconds where `throttle`) without parsing any log text; with
--verbose the whole logged line shows. No TensorFlow here: the runner imports this module before
it knows whether anything will run.
"""

from __future__ import annotations

import dataclasses
import logging

LOGGER = logging.getLogger(__name__)
FIELD = "progress"


@dataclasses.dataclass(frozen=True)
class Progress:
    """One progress line for the console: `text`, e.g. "epoch 3/40: validation RMSE 0.9377
    stars"; `throttle`: the console may drop it when its last progress line is recent (per-epoch
    lines), or it always shows (a stage's single result line)."""

    text: str
    throttle: bool = True


def report(text: str, detail: str = "", throttle: bool = True) -> None:
    """Logs `text` (and `detail`, for --verbose only) with its Progress."""
    LOGGER.info("%s%s", text, f"; {detail}" if detail else "",
                extra={FIELD: Progress(text, throttle)})


def of(record: logging.LogRecord) -> Progress | None:
    """The Progress a log record carries, or None."""
    progress = getattr(record, FIELD, None)
    return progress if isinstance(progress, Progress) else None
