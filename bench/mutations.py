"""Hand-written mutations of the TensorFlow code, each with the test that must catch it.

    .venv/bin/python -m bench.mutations [--only NAME ...] [--list]

`make mutation` runs this after mutmut (which covers the pure-Python modules, see
pyproject.toml's [tool.mutmut]). mutmut does not fit the TensorFlow modules: it would rewrite
every function of models/retrieval.py, models/base.py and models/export.py, whose tests train
models for minutes, and it skips decorated functions such as a TFX component's body. Here each
entry is one realistic bug: the file, the exact text it replaces (which must occur exactly once),
the new text, and the pytest node ids that must fail on it. For each, the script checks that the
tests pass on the unmodified code first (once for all), applies the mutation, runs the tests in a
fresh process, restores the file, and reports "caught" (the tests failed) or "SURVIVED".

The file is restored on every exit: a test failure, an exception, Ctrl-C or SIGTERM. A copy of
the original is kept next to it as `<file>.mutation-backup` while a mutation is applied, so that
even a killed run is undone by the next one (it restores any backup it finds first). The
mutations are applied to the checkout itself: tests run from it meanwhile may import a mutant.

Exit status: 0 when every mutation was caught, 1 when one survived or the tests fail on the
unmodified code, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BACKUP_SUFFIX = ".mutation-backup"
RESULTS_FILE = "hand_written.json"


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]  # pytest node ids; at least one must fail on the mutant
    why: str  # the bug it stands for


MUTATIONS = [
    # Issue 25's survivors, kept as regression checks. The gate's wiring is here because mutmut
    # does not mutate decorated functions (the @component body).
    Mutation(
        "gate-topk-from-baseline", "components/evaluation/blessing_gate.py",
        "TOPK_VERDICT: evaluator_verdict(topk_blessing)",
        "TOPK_VERDICT: evaluator_verdict(baseline_blessing)",
        ("tests/test_blessing_gate.py::"
         "test_one_failing_verdict_among_passing_ones_refuses_the_model_and_names_its_rule",),
        "the gate reads the top-k verdict from the bias Evaluator's blessing: top-k rules ignored"),
    Mutation(
        "gate-blessed-from-baseline", "components/evaluation/blessing_gate.py",
        "results.LATEST_BLESSED: evaluator_verdict(blessed_blessing)",
        "results.LATEST_BLESSED: evaluator_verdict(baseline_blessing)",
        ("tests/test_blessing_gate.py::"
         "test_one_failing_verdict_among_passing_ones_refuses_the_model_and_names_its_rule",),
        "the gate ignores the comparison with the blessed model"),
    Mutation(
        "parsing-rating-max-plus-half", "components/movielens_example_gen/parsing.py",
        "rating <= features.RATING_MAX:", "rating <= features.RATING_MAX + 0.5:",
        ("tests/test_parsing.py::"
         "test_parse_rating_accepts_exactly_the_closed_range_half_to_five_stars",),
        "5.5-star ratings accepted into the training data"),
    # models/retrieval.py
    Mutation(
        "exclude-seen-to-zero", "models/retrieval.py",
        "tf.fill(tf.shape(seen.flat_values), -np.inf)",
        "tf.fill(tf.shape(seen.flat_values), 0.0)",
        ("tests/test_retrieval.py::"
         "test_exclude_puts_seen_movies_below_every_unseen_score_even_negative_ones",),
        "movies a user rated are recommended again when their unseen scores are negative"),
    Mutation(
        "retrieval-logits-without-bias", "models/retrieval.py",
        "tf.concat([query, tf.ones_like(query[:, :1])], axis=1)",
        "tf.concat([query, tf.zeros_like(query[:, :1])], axis=1)",
        ("tests/test_export.py::"
         "test_the_second_stage_adds_rating_weight_times_stars_to_the_retrieval_logit",),
        "the movies' popularity bias drops out of the retrieval logits"),
    Mutation(
        "history-tower-mean-not-rsqrt", "models/retrieval.py",
        "return summed * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]\n\n\nclass "
        "FullSoftmax",
        "return summed / tf.maximum(counts, 1.0)[:, None]\n\n\nclass FullSoftmax",
        ("tests/test_retrieval.py::test_the_history_tower_is_the_rsqrt_normalised_sum",),
        "a user's query normalised by |H| instead of |H|^-1/2: long histories fade"),
    # models/base.py
    Mutation(
        "user-bias-times-zero", "models/base.py",
        "return tf.squeeze(self.user_bias(users), -1) * known(users, self.num_users)",
        "return tf.squeeze(self.user_bias(users), -1) * 0.0",
        ("tests/test_model.py::"
         "test_a_prediction_is_mu_plus_both_biases_plus_the_dot_product_in_both_scoring_paths",),
        "the user bias drops out of every prediction"),
    Mutation(
        "oov-movie-gets-a-bias", "models/base.py",
        "return tf.squeeze(self.movie_bias(movies), -1) * known(movies, self.num_movies)",
        "return tf.squeeze(self.movie_bias(movies), -1)",
        ("tests/test_model.py::"
         "test_a_prediction_is_mu_plus_both_biases_plus_the_dot_product_in_both_scoring_paths",),
        "an unknown movie gets the OOV bucket's (untrained) bias"),
    Mutation(
        "oov-user-gets-factors", "models/base.py",
        "return p * known(users, self.num_users)[:, None]", "return p",
        ("tests/test_model.py::"
         "test_a_prediction_is_mu_plus_both_biases_plus_the_dot_product_in_both_scoring_paths",),
        "an unknown user gets the OOV bucket's (untrained) factors"),
    Mutation(
        "drift-time-zero-is-now", "models/base.py",
        "given = timestamps >= 0", "given = timestamps > 0",
        ("tests/test_rating_models.py::test_at_a_time_the_window_is_the_users_ratings_nearest_to_it",),
        "a rating at time 0 takes the drift of 'now' instead of its own time"),
    # models/export.py
    Mutation(
        "unknown-user-is-user-0", "models/export.py",
        "np.arange(num_users, dtype=np.int64), default=num_users)",
        "np.arange(num_users, dtype=np.int64), default=0)",
        ("tests/test_export.py::"
         "test_predict_ids_is_mu_plus_the_biases_of_the_raw_ids_and_an_unknown_user_has_none",),
        "an unknown user id is served as the first user of the vocabulary"),
    Mutation(
        "recommend-seen-movies", "models/export.py",
        "top = tf.math.top_k(self._unseen(users, scores), k=count)",
        "top = tf.math.top_k(scores, k=count)",
        ("tests/test_export.py::test_recommend_ranks_the_unseen_catalogue_by_predicted_rating",),
        "recommend (one stage) lists movies the user already rated"),
    Mutation(
        "rerank-subtracts-stars", "models/export.py",
        "retrieved.values[:, :n] + self.rating_weight * stars[:, :n]",
        "retrieved.values[:, :n] - self.rating_weight * stars[:, :n]",
        ("tests/test_export.py::"
         "test_the_second_stage_adds_rating_weight_times_stars_to_the_retrieval_logit",),
        "the second stage ranks the worst-rated retrieved movies first"),
    Mutation(
        "user-id-zero-accepted", "models/export.py",
        '_check(tf.reduce_all(user_id >= 1), "user_id must be >= 1:",\n'
        "                   lambda: tf.boolean_mask(user_id, user_id < 1)),\n        ]\n"
        "        with tf.control_dependencies(checks):\n"
        "            return",
        '_check(tf.reduce_all(user_id >= 0), "user_id must be >= 1:",\n'
        "                   lambda: tf.boolean_mask(user_id, user_id < 1)),\n        ]\n"
        "        with tf.control_dependencies(checks):\n"
        "            return",
        ("tests/test_export.py::"
         "test_predict_ids_refuses_user_id_0_and_movies_outside_the_catalogue",),
        "predict_ids serves user_id 0 (not a MovieLens id) instead of refusing it"),
    Mutation(
        "missing-timestamp-is-time-0", "models/export.py",
        "default_value=features.NO_TIMESTAMP)", "default_value=0)",
        ("tests/test_export.py::test_an_example_without_a_timestamp_takes_the_users_drift_now",),
        "a tf.Example without a time takes the drift at 1970 instead of now"),
    Mutation(
        "untrained-movies-retrieved", "models/export.py",
        "vectors[~trained, -1] = -np.inf", "vectors[~trained, -1] = 0.0",
        ("tests/test_retrieval.py::test_movies_never_trained_on_are_never_retrieved",),
        "movies first rated after training get retrieved with a zero vector"),
]


def restore_leftovers() -> None:
    """Undoes mutations a killed run left applied."""
    for mutation in MUTATIONS:
        path = REPO / mutation.file
        backup = path.with_name(path.name + BACKUP_SUFFIX)
        if backup.exists():
            print(f"restoring {mutation.file} from {backup.name} (left by an interrupted run)")
            os.replace(backup, path)


def run_tests(tests: tuple[str, ...], log: Path) -> int:
    """pytest on the node ids in a fresh process (a mutant must be imported anew); its exit
    code. Output goes to `log`."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-m", "", *tests]
    with open(log, "w") as out:
        return subprocess.call(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def apply(mutation: Mutation) -> tuple[Path, str]:
    """Writes the mutant; returns the path and its original text."""
    path = REPO / mutation.file
    original = path.read_text()
    count = original.count(mutation.old)
    if count != 1:
        raise SystemExit(f"{mutation.name}: the text to replace occurs {count} times in "
                         f"{mutation.file}, not once; update bench/mutations.py")
    path.with_name(path.name + BACKUP_SUFFIX).write_text(original)
    path.write_text(original.replace(mutation.old, mutation.new))
    return path, original


def restore(path: Path, original: str) -> None:
    path.write_text(original)
    path.with_name(path.name + BACKUP_SUFFIX).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these mutations only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--log-dir", type=Path, default=REPO / "mutation-logs",
                        help="each pytest run's output (default: mutation-logs/)")
    args = parser.parse_args(argv)
    selected = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.only and len(selected) != len(args.only):
        parser.error(f"unknown names; known: {[m.name for m in MUTATIONS]}")
    if args.list:
        for m in selected:
            print(f"{m.name:32} {m.file:45} {m.why}")
        return 0

    # SIGTERM (a killed make, a CI timeout) unwinds like Ctrl-C, through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    restore_leftovers()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    tests = tuple(dict.fromkeys(t for m in selected for t in m.tests))
    start = time.time()
    print(f"Hand-written mutations: the {len(tests)} tests on the unmodified code first")
    if run_tests(tests, args.log_dir / "unmodified.log") != 0:
        print(f"the tests fail on the unmodified code: see {args.log_dir / 'unmodified.log'}")
        return 1
    survived = []
    try:
        for i, m in enumerate(selected, 1):
            t0 = time.time()
            path, original = apply(m)
            try:
                code = run_tests(m.tests, args.log_dir / f"{m.name}.log")
            finally:
                restore(path, original)
            # pytest: 1 tests failed; 2 interrupted or a collection error (an import error of
            # the mutant counts as caught); 3-5: internal error, usage, no tests collected.
            if code == 0:
                survived.append(m)
            elif code not in (1, 2):
                raise SystemExit(f"{m.name}: pytest exited {code}; see "
                                 f"{args.log_dir / (m.name + '.log')}")
            verdict = "caught" if code else "SURVIVED"
            print(f"[{i}/{len(selected)}] {verdict:8} {m.name} ({m.file}, {time.time() - t0:.0f} s)"
                  f": {m.why}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; every file is restored")
        return 130
    elapsed = time.time() - start
    print(f"{len(selected) - len(survived)}/{len(selected)} hand-written mutations caught in "
          f"{elapsed:.0f} s")
    # For bench/mutation_score.py's table.
    (args.log_dir / RESULTS_FILE).write_text(json.dumps({
        "seconds": round(elapsed), "mutations": [
            {"name": m.name, "file": m.file, "why": m.why, "tests": list(m.tests),
             "caught": m not in survived} for m in selected]}, indent=2) + "\n")
    for m in survived:
        print(f"SURVIVED {m.name}: {m.file}: {m.old!r} -> {m.new!r}; expected to fail: "
              f"{', '.join(m.tests)}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
