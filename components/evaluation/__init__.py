"""Model evaluation beyond TFX's Evaluator: a slice-size-aware TFMA metric, reading TFMA results,
the gate that combines the Evaluators' verdicts into one blessing, and the evaluation report."""
