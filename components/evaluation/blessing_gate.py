"""BlessingGate: one ModelBlessing from the verdicts of the pipeline's three evaluators.

TFMA compares a candidate with one baseline per evaluation, so the pipeline runs two TFX
Evaluators on ratings: the candidate against the bias baseline trained in the same run, and
against the latest blessed model. The TopKEvaluator judges the top-k recommendations against the
popularity baseline and the latest blessed model. Each blesses on its own rules; the gate blesses
only when all three did (comparisons with a blessed model are skipped when no model was blessed
before). The Pusher and the latest-blessed-model Resolver read only the gate's blessing, so a
model refused by any evaluator is never pushed nor used as the next run's reference.
"""


import json
import logging
import os

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from components.evaluation import results, topk

_LOG = logging.getLogger(__name__)
# Read by the Pusher and by LatestBlessedModelStrategy, as on the Evaluator's blessing.
BLESSED_KEY = "blessed"
CURRENT_MODEL_ID_KEY = "current_model_id"
CURRENT_MODEL_URI_KEY = "current_model"
# Set by the Evaluator only when it validated thresholds (it had a baseline); the TopKEvaluator
# sets it always (its popularity rule needs no earlier model).
_EVALUATOR_BLESSED_KEY = "blessed"
FAILURES_KEY = "failures"
VERDICT_FILE = "verdict.json"
# verdict.json's key of the TopKEvaluator's verdict, next to the Evaluators' baseline names.
TOPK_VERDICT = "top_k"


class EvaluatorVerdictError(RuntimeError):
    """An Evaluator's blessing is missing the verdict the gate needs."""


def evaluator_verdict(blessing: standard_artifacts.ModelBlessing) -> bool | None:
    """True/False as the evaluator blessed; None when it validated nothing (no baseline)."""
    if _EVALUATOR_BLESSED_KEY not in blessing.mlmd_artifact.custom_properties:
        return None
    return blessing.get_int_custom_property(_EVALUATOR_BLESSED_KEY) == 1


def decide(baseline_verdict: bool | None, blessed_verdict: bool | None,
           topk_verdict: bool | None) -> bool:
    """All rules hold: the rating rules against the bias baseline always and against the blessed
    model if any, and the top-k rules (which skip the blessed model themselves)."""
    if baseline_verdict is None:
        raise EvaluatorVerdictError(
            "the Evaluator against the bias baseline validated no threshold; its EvalConfig "
            "must compare the candidate with the BaselineTrainer's model")
    if topk_verdict is None:
        raise EvaluatorVerdictError("the TopKEvaluator's blessing has no verdict")
    return baseline_verdict and blessed_verdict is not False and topk_verdict


@component
def BlessingGate(  # noqa: N802 - TFX component names are classes
    model: InputArtifact[standard_artifacts.Model],
    baseline_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    baseline_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessed_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessed_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    topk_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    topk_blessing: InputArtifact[standard_artifacts.ModelBlessing],
    blessing: OutputArtifact[standard_artifacts.ModelBlessing],
) -> None:
    """Blesses `model` when the three evaluators did; records every failed rule."""
    verdicts = {results.BIAS_BASELINE: evaluator_verdict(baseline_blessing),
                results.LATEST_BLESSED: evaluator_verdict(blessed_blessing),
                TOPK_VERDICT: evaluator_verdict(topk_blessing)}
    blessed = decide(verdicts[results.BIAS_BASELINE], verdicts[results.LATEST_BLESSED],
                     verdicts[TOPK_VERDICT])
    failed = [f for uri in (baseline_evaluation.uri, blessed_evaluation.uri)
              for f in results.load_evaluation(uri).failures]
    failed += topk.TopKEvaluation.load(topk_evaluation.uri).failures
    # Overall rules first, then slices by how far they missed.
    failures = [f.message() for f in sorted(
        failed, key=lambda f: (f.slice != results.OVERALL, -f.excess))]
    if not blessed and not failures:
        failures = ["an evaluator refused the model without a failed rule; see "
                    f"{baseline_evaluation.uri}, {blessed_evaluation.uri} and "
                    f"{topk_evaluation.uri}"]

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
