"""BlessingGate: one ModelBlessing from the verdicts of the pipeline's two Evaluators.

TFMA compares a candidate with one baseline per evaluation, so the pipeline runs two TFX
Evaluators: the candidate against the bias baseline trained in the same run, and against the
latest blessed model. Each blesses on its own thresholds; the gate blesses only when both did
(the second is skipped when no model was blessed before). The Pusher and the latest-blessed-model
Resolver read only the gate's blessing, so a model refused by either Evaluator is never pushed
nor used as the next run's reference.
"""


import json
import logging
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.evaluation import results

_LOG = logging.getLogger(__name__)
# Read by the Pusher and by LatestBlessedModelStrategy, as on the Evaluator's blessing.
BLESSED_KEY = "blessed"
CURRENT_MODEL_ID_KEY = "current_model_id"
CURRENT_MODEL_URI_KEY = "current_model"
# Set by the Evaluator only when it validated thresholds (it had a baseline).
_EVALUATOR_BLESSED_KEY = "blessed"
FAILURES_KEY = "failures"
VERDICT_FILE = "verdict.json"


class EvaluatorVerdictError(RuntimeError):
    """An Evaluator's blessing is missing the verdict the gate needs."""


def evaluator_verdict(blessing: standard_artifacts.ModelBlessing) -> bool | None:
    """True/False as the Evaluator blessed; None when it validated nothing (no baseline)."""
    if _EVALUATOR_BLESSED_KEY not in blessing.mlmd_artifact.custom_properties:
        return None
    return blessing.get_int_custom_property(_EVALUATOR_BLESSED_KEY) == 1


def decide(baseline_verdict: bool | None, blessed_verdict: bool | None) -> bool:
    """All rules hold: against the bias baseline always, against the blessed model if any."""
    if baseline_verdict is None:
        raise EvaluatorVerdictError(
            "the Evaluator against the bias baseline validated no threshold; its EvalConfig "
            "must compare the candidate with the BaselineTrainer's model")
    return baseline_verdict and blessed_verdict is not False


@component
def BlessingGate(  # noqa: N802 - TFX component names are classes
    model: InputArtifact[standard_artifacts.Model],
    baseline_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    baseline_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessed_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessed_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
) -> None:
    """Blesses `model` when both Evaluators did; records every failed rule."""
    verdicts = {results.BIAS_BASELINE: evaluator_verdict(baseline_blessing),
                results.LATEST_BLESSED: evaluator_verdict(blessed_blessing)}
    blessed = decide(verdicts[results.BIAS_BASELINE], verdicts[results.LATEST_BLESSED])
    failed = [f for uri in (baseline_evaluation.uri, blessed_evaluation.uri)
              for f in results.load_evaluation(uri).failures]
    # Overall rules first, then slices by how far they missed.
    failures = [f.message() for f in sorted(
        failed, key=lambda f: (f.slice != results.OVERALL, -f.excess))]
    if not blessed and not failures:
        failures = ["an Evaluator refused the model without a failed threshold; see "
                    f"{baseline_evaluation.uri} and {blessed_evaluation.uri}"]

    blessing.set_int_custom_property(BLESSED_KEY, int(blessed))
    blessing.set_int_custom_property(CURRENT_MODEL_ID_KEY, model.id)
    blessing.set_string_custom_property(CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_string_custom_property(FAILURES_KEY, "\n".join(failures))
    tf.io.gfile.makedirs(blessing.uri)
    with tf.io.gfile.GFile(os.path.join(blessing.uri, VERDICT_FILE), "w") as f:
        f.write(json.dumps({
            "blessed": blessed,
            # null: that comparison was skipped (no model blessed before).
            "evaluators": verdicts,
            "failures": failures,
        }, indent=2) + "\n")
    if blessed:
        _LOG.info("Model %s blessed: every rule holds", model.uri)
    else:
        _LOG.warning("Model %s NOT blessed:\n  %s", model.uri, "\n  ".join(failures))
