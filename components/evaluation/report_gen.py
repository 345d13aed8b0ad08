"""EvaluationReport: a Markdown page and PNG plots that show why a model was or was not blessed.

For each run: the verdict and where the model was pushed, every blessing rule with its values,
the change it judges with its bootstrap interval and its verdict, per-slice tables and plots
(genre, user activity, movie popularity) of the candidate's RMSE next to the bias baseline's and
the latest blessed model's, with example counts, and the top-k metrics of the candidate's
recommendations next to the popularity baseline's and the latest blessed model's, overall and per
user activity, with a plot of NDCG@k. Written into the component's output artifact, next to the
pipeline's other outputs.
"""


import json
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.pyplot as plt  # noqa: E402
import tensorflow as tf  # noqa: E402
from tfx.dsl.component.experimental.annotations import (  # noqa: E402
    InputArtifact,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component  # noqa: E402
from tfx.types import artifact, standard_artifacts  # noqa: E402
from tfx.utils import path_utils  # noqa: E402

from components.atomic_pusher import IDENTICAL_KEY  # noqa: E402
from components.evaluation import blessing_gate, results, topk  # noqa: E402
from components.evaluation.eval_sample import SampleInfo  # noqa: E402
from components.evaluation.metrics import (  # noqa: E402
    RMSE_CHANGE_LOWER,
    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES,
)
from components.movielens_example_gen.slicing import bucket_labels  # noqa: E402
from models import contract, features, item_item_training, new_users, warm_start  # noqa: E402

REPORT_FILE = "report.md"
TOPK_PLOT_FILE = f"ndcg_by_{features.USER_ACTIVITY}.png"
_COLORS = {results.CANDIDATE: "#1f77b4", results.BIAS_BASELINE: "#ff7f0e",
           results.LATEST_BLESSED: "#2ca02c", results.POPULARITY: "#9467bd"}


class EvaluationReport(artifact.Artifact):
    """A folder with report.md and the PNG plots it shows."""

    # "<namespace>.<Name>": the form KFP v2 requires of custom artifact types.
    TYPE_NAME = "movielens.EvaluationReport"


def _fmt(value: float, spec: str = ".4f") -> str:
    return "–" if value is None or math.isnan(value) else format(value, spec)


class _Report:
    def __init__(self, vs_baseline: results.Evaluation, vs_blessed: results.Evaluation,
                 top_k: topk.TopKEvaluation, settings: dict):
        self.vs_baseline = vs_baseline
        self.vs_blessed = vs_blessed
        self.top_k = top_k
        self.settings = settings
        self.has_blessed = vs_blessed.baseline == results.LATEST_BLESSED

    def rmse(self, key: results.SliceKey, model: str) -> float:
        if model == results.LATEST_BLESSED:
            return self.vs_blessed.value(key, model, results.RMSE)
        return self.vs_baseline.value(key, model, results.RMSE)

    def count(self, key: results.SliceKey) -> float:
        return self.vs_baseline.value(key, results.CANDIDATE, results.EXAMPLE_COUNT)

    def models(self) -> list[str]:
        return [results.CANDIDATE, results.BIAS_BASELINE] + (
            [results.LATEST_BLESSED] if self.has_blessed else [])

    def slice_values(self, feature: str) -> list[str]:
        present = {v for f, v in self.vs_baseline.metrics if f == feature}
        edges = {features.USER_ACTIVITY: self.settings["user_activity_edges"],
                 features.MOVIE_POPULARITY: self.settings["movie_popularity_edges"]}
        if feature in edges:
            return [v for v in bucket_labels(edges[feature]) if v in present]
        return sorted(present, key=lambda v: -self.count((feature, v)))

    def rules(self) -> list[str]:
        """Markdown table rows, one per blessing rule: each change with its interval."""
        s = self.settings
        overall = results.OVERALL
        failed = {(f.rule.setting, f.slice): f
                  for f in self.vs_baseline.failures + self.vs_blessed.failures}
        cand, bias = self.rmse(overall, results.CANDIDATE), self.rmse(overall,
                                                                      results.BIAS_BASELINE)
        rows = [
            "| rule | setting | result | values |", "|---|---|---|---|",
            f"| {results.RULES[(results.BIAS_BASELINE, RMSE_CHANGE_LOWER)].title} | "
            f"min_improvement_over_baseline = {s['min_improvement_over_baseline']} | "
            f"{'FAIL' if ('min_improvement_over_baseline', overall) in failed else 'pass'} | "
            f"candidate {_fmt(cand)}, bias baseline {_fmt(bias)}, change "
            f"{self.vs_baseline.interval(overall).describe()} "
            f"(allowed <= {0.0 - s['min_improvement_over_baseline']:+.4f}) |",
        ]
        if self.has_blessed:
            blessed = self.rmse(overall, results.LATEST_BLESSED)
            cand_b = self.vs_blessed.value(overall, results.CANDIDATE, results.RMSE)
            result = 'FAIL' if ('max_regression_vs_blessed', overall) in failed else 'pass'
            values = (f"candidate {_fmt(cand_b)}, latest blessed {_fmt(blessed)}, change "
                      f"{self.vs_blessed.interval(overall).describe()} (allowed <= "
                      f"{s['max_regression_vs_blessed']:+.4f})")
        else:
            result, values = "skipped", "no model blessed before this run"
        rows.append(f"| {results.RULES[(results.LATEST_BLESSED, RMSE_CHANGE_LOWER)].title}"
                    f" | max_regression_vs_blessed = {s['max_regression_vs_blessed']} | {result} | "
                    f"{values} |")
        return rows + [self.genre_rule(), *self.topk_rules()]

    def genre_rule(self) -> str:
        """The genre rule's row: the genre whose interval reaches highest, and the failed ones."""
        s = self.settings
        checked = [v for v in self.slice_values(features.GENRES)
                   if self.count((features.GENRES, v)) >= s["genre_min_examples"]]
        genre_failures = [f for f in self.vs_baseline.failures
                          if f.rule.setting == "genre_tolerance"]
        intervals = {v: self.vs_baseline.interval((features.GENRES, v)) for v in checked}
        worst = max(intervals, key=lambda v: intervals[v].lower) if intervals else None
        values = (f"{len(checked)} genres checked; highest: {worst} change "
                  f"{intervals[worst].describe()}" if worst else "no genre has enough ratings")
        if genre_failures:
            values += "; failed: " + ", ".join(
                f"{f.slice[1]} ({f.interval.describe()})"
                for f in sorted(genre_failures, key=lambda f: -f.lower))
        rule = results.RULES[(results.BIAS_BASELINE, RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES)]
        return (f"| {rule.title} | genre_tolerance = {s['genre_tolerance']}, genre_min_examples "
                f"= {s['genre_min_examples']} | {'FAIL' if genre_failures else 'pass'} | "
                f"{values} (allowed <= {s['genre_tolerance']:+.4f}) |")

    def topk_rules(self) -> list[str]:
        """Markdown table rows of the TopKEvaluator's rules."""
        top_k, rows = self.top_k, []
        failed = {f.rule.setting for f in top_k.failures}
        cand = top_k.value(results.CANDIDATE, topk.OVERALL, results.NDCG)
        for baseline, setting, allowed in (
                (results.POPULARITY, "min_ndcg_over_popularity",
                 self.settings["min_ndcg_over_popularity"]),
                (results.LATEST_BLESSED, "max_ndcg_regression_vs_blessed",
                 -self.settings["max_ndcg_regression_vs_blessed"])):
            if baseline in top_k.models:
                base = top_k.value(baseline, topk.OVERALL, results.NDCG)
                result = "FAIL" if setting in failed else "pass"
                values = (f"candidate NDCG@{top_k.k} {_fmt(cand)}, "
                          f"{results.MODEL_TITLES[baseline]} {_fmt(base)}, change "
                          f"{top_k.intervals[baseline].describe()} "
                          f"(allowed >= {allowed + 0.0:+.4f})")
            else:
                result, values = "skipped", "no model blessed before this run"
            rows.append(f"| {results.RULES[(baseline, results.NDCG)].title} | {setting} = "
                        f"{self.settings[setting]} | {result} | {values} |")
        return rows

    def topk_section(self) -> list[str]:
        """The top-k metrics per model, overall and per user activity, as Markdown."""
        top_k, k = self.top_k, self.top_k.k
        overall = top_k.counts[topk.OVERALL]
        lines = [
            f"## Top-{k} recommendations", "",
            f"Each model's top {k} for the {overall['users']:,} users with train ratings and at "
            f"least one eval rating ({overall['relevant']:,} eval ratings, all relevant): the "
            f"candidate's and the latest blessed model's `recommend`, and the popularity "
            f"baseline: the {k} most-rated train movies the user has not rated. "
            f"{top_k.cold_start_users:,} eval users without train ratings (cold start) are not "
            f"counted. Coverage: distinct recommended movies / the {top_k.catalogue_size:,} "
            f"movies rated in either split.", "",
            "| user activity | users | eval ratings | model | "
            + " | ".join(t.format(k=k) for t in topk.METRIC_TITLES.values()) + " |",
            "|---|---:|---:|---|" + "---:|" * len(topk.METRIC_TITLES)]
        for bucket in top_k.buckets():
            counts = top_k.counts[bucket]
            for i, model in enumerate(top_k.models):
                head = ([f"**{bucket}**" if bucket == topk.OVERALL else bucket,
                         f"{counts['users']:,}", f"{counts['relevant']:,}"] if i == 0
                        else ["", "", ""])
                cells = [*head, results.MODEL_TITLES[model],
                         *(_fmt(top_k.value(model, bucket, m)) for m in topk.METRIC_TITLES)]
                lines.append("| " + " | ".join(cells) + " |")
        return lines

    def topk_plot(self, path: str) -> None:
        """NDCG@k per user-activity bucket (overall first), one bar per model; users below."""
        top_k = self.top_k
        buckets = top_k.buckets()
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(max(6.0, 1.2 * len(buckets) + 2), 6.5), sharex=True,
            gridspec_kw={"height_ratios": [3, 1]})
        width = 0.8 / len(top_k.models)
        xs = range(len(buckets))
        for i, model in enumerate(top_k.models):
            top.bar([x + (i - (len(top_k.models) - 1) / 2) * width for x in xs],
                    [top_k.value(model, b, results.NDCG) for b in buckets], width,
                    label=results.MODEL_TITLES[model], color=_COLORS[model])
        top.set_ylabel(f"NDCG@{top_k.k}")
        top.set_title(f"Top-{top_k.k} NDCG by user activity (train ratings)")
        top.legend(loc="upper left", fontsize="small")
        top.grid(axis="y", alpha=0.3)
        bottom.bar(list(xs), [top_k.counts[b]["users"] for b in buckets], color="#7f7f7f")
        bottom.set_ylabel("users")
        bottom.set_xticks(list(xs))
        bottom.set_xticklabels(buckets)
        fig.tight_layout()
        with tf.io.gfile.GFile(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)

    def table(self, feature: str, title: str) -> list[str]:
        models = self.models()
        header = [title, "ratings", *(f"RMSE {results.MODEL_TITLES[m]}" for m in models),
                  "change vs bias", "MAE candidate"]
        failed = {f.slice[1] for f in self.vs_baseline.failures if f.slice[0] == feature}
        if feature == features.GENRES:
            header.append("rule")
        rows = ["| " + " | ".join(header) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        keys = [(results.OVERALL, "**overall**")] + [
            ((feature, v), v) for v in self.slice_values(feature)]
        for key, name in keys:
            cand = self.rmse(key, results.CANDIDATE)
            cells = [name, _fmt(self.count(key), ",.0f"),
                     *(_fmt(self.rmse(key, m)) for m in models),
                     _fmt(cand - self.rmse(key, results.BIAS_BASELINE), "+.4f"),
                     _fmt(self.vs_baseline.value(key, results.CANDIDATE, results.MAE))]
            if feature == features.GENRES:
                if key == results.OVERALL:
                    cells.append("")
                elif key[1] in failed:
                    cells.append("FAIL")
                elif self.count(key) >= self.settings["genre_min_examples"]:
                    cells.append("pass")
                else:
                    cells.append("not checked (few ratings)")
            rows.append("| " + " | ".join(cells) + " |")
        return rows

    def plot(self, feature: str, title: str, path: str) -> None:
        values = self.slice_values(feature)
        models = self.models()
        fig, (top, bottom) = plt.subplots(
            2, 1, figsize=(max(6.0, 0.55 * len(values) + 2), 6.5), sharex=True,
            gridspec_kw={"height_ratios": [3, 1]})
        width = 0.8 / len(models)
        xs = range(len(values))
        for i, model in enumerate(models):
            top.bar([x + (i - (len(models) - 1) / 2) * width for x in xs],
                    [self.rmse((feature, v), model) for v in values], width,
                    label=results.MODEL_TITLES[model], color=_COLORS[model])
        rmses = [self.rmse((feature, v), m) for v in values for m in models]
        rmses = [r for r in rmses if not math.isnan(r)]
        if rmses:
            top.set_ylim(max(0.0, min(rmses) - 0.1), max(rmses) + 0.05)
        top.set_ylabel("RMSE (stars)")
        top.set_title(f"Eval-split RMSE by {title}")
        top.legend(loc="upper left", fontsize="small")
        top.grid(axis="y", alpha=0.3)
        bottom.bar(list(xs), [self.count((feature, v)) for v in values], color="#7f7f7f")
        bottom.set_ylabel("ratings")
        bottom.set_xticks(list(xs))
        bottom.set_xticklabels(values, rotation=45, ha="right")
        fig.tight_layout()
        with tf.io.gfile.GFile(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
        plt.close(fig)


SLICINGS = ((features.GENRES, "genre"), (features.USER_ACTIVITY, "user activity (train ratings)"),
            (features.MOVIE_POPULARITY, "movie popularity (train ratings)"))


def load_training_choices(model_uri: str) -> dict | None:
    """The Trainer's contract.CHOICES_FILE in its Model artifact; None for an older model."""
    path = os.path.join(path_utils.serving_model_path(model_uri), contract.CHOICES_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())


def format_choices(choices: dict) -> str:
    """One line: the user drift, the new users' ratings, the popularity weight, the history
    dropout and the item-item settings the Trainer chose on validation, and the warm start."""
    drift = choices.get("user_drift")
    if drift is None:
        text = "no user drift (not configured)"
    else:
        scores = drift["validation_rmse"]
        off = scores.get("off", math.nan)
        if drift["window"]:
            chosen = scores[f"{drift['window']}/{drift['shrinkage']:g}"]
            text = (f"user drift window {drift['window']}, shrinkage {drift['shrinkage']:g} "
                    f"(validation RMSE {chosen:.4f}, {off:.4f} without)")
        else:
            text = f"no user drift (validation RMSE {off:.4f} without; no window did better)"
    new_user = choices.get("new_users")
    if new_user is not None:
        text += f"; new users get {new_users.describe(new_user)}"
    weight = choices.get("popularity_weight")
    if weight is not None:
        text += f"; recommend's popularity weight {weight:g}"
    dropouts = choices.get("history_dropout_ndcg")
    if dropouts:
        best = max(dropouts, key=dropouts.get)
        others = ", ".join(f"{d}: {v:.4f}" for d, v in dropouts.items() if d != best)
        text += (f"; retrieval history dropout {best} (validation NDCG@10 {dropouts[best]:.4f}"
                 + (f"; {others}" if others else "") + ")")
    item = choices.get("item_item")
    if item is not None:
        ndcg = item["validation_ndcg"].get(item_item_training.record_key(item))
        text += (f"; item-item stage l2 {item['l2']:g}, popularity exponent "
                 f"{item['popularity_exponent']:g}, user weight {item.get('user_weight', 0.0):g}"
                 f", side weight {item.get('side_weight', 0.0):g}"
                 + (f" (validation NDCG@10 {ndcg:.4f})" if ndcg is not None
                    else " (the serving model's)" if choices.get("warm_start") else ""))
    start = choices.get("warm_start")
    if start is not None:
        text += "; rating model " + warm_start.WarmStart(**start).describe()
    return f"Trainer's choices on its validation data: {text}"


def write_report(output_dir: str, vs_baseline: results.Evaluation,
                 vs_blessed: results.Evaluation, top_k: topk.TopKEvaluation, blessed: bool,
                 failures: Sequence[str], pushed_to: str | None, settings: dict,
                 already_served: bool = False, choices: dict | None = None,
                 sample: SampleInfo | None = None) -> str:
    """Writes report.md and its PNGs into output_dir; returns the report's path. `choices`:
    what the Trainer chose on its validation data (load_training_choices); `sample`: what the
    TFMA Evaluators read of the eval split (EvalSample)."""
    report = _Report(vs_baseline, vs_blessed, top_k, settings)
    tf.io.gfile.makedirs(output_dir)
    verdict = "BLESSED" if blessed else "NOT BLESSED"
    lines = [f"# Evaluation report: model {verdict}", ""]
    if blessed:
        if already_served:
            lines.append(f"Every blessing rule holds. It is the model already served from "
                         f"`{pushed_to}`: no new version was pushed.")
        else:
            lines.append(f"Every blessing rule holds. Pushed to `{pushed_to}`." if pushed_to
                         else "Every blessing rule holds, but the Pusher did not push it.")
    else:
        lines += ["The model was **not pushed**. Failed rules:", ""]
        lines += [f"- {message}" for message in failures]
    lines += ["", "## Blessing rules (`pipeline.configs.EvalSettings`)", "",
              f"Each rule judges the change (candidate - baseline) on its "
              f"{settings['confidence']:.0%} interval: a paired bootstrap over users, "
              f"{settings['bootstrap_samples']:,} resamples, seed {settings['bootstrap_seed']}. "
              f"A rule fails only when the whole interval lies beyond the allowed change.", "",
              *report.rules(), "",
              *([format_choices(choices) + ".", ""] if choices is not None else []),
              "RMSE and MAE in stars on the eval split"
              + (f", of which the Evaluators read {sample.describe()}" if sample else "")
              + ". Slices by activity count the ratings of "
              "the example's user or movie in the train split; `0` is cold start.", ""]
    for feature, title in SLICINGS:
        png = f"rmse_by_{feature}.png"
        report.plot(feature, title, os.path.join(output_dir, png))
        lines += [f"## By {title}", "", *report.table(feature, title), "", f"![{title}]({png})",
                  ""]
    report.topk_plot(os.path.join(output_dir, TOPK_PLOT_FILE))
    lines += [*report.topk_section(), "",
              f"![top-{top_k.k} NDCG by user activity]({TOPK_PLOT_FILE})", ""]
    lines += ["Evaluations (TFMA): candidate vs bias baseline `" + vs_baseline.uri + "`; "
              "candidate vs latest blessed model `" + vs_blessed.uri + "`. Top-k: `"
              + top_k.uri + "`.", ""]
    path = os.path.join(output_dir, REPORT_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("\n".join(lines))
    return path


@component
def EvaluationReportGen(  # noqa: N802 - TFX component names are classes
    baseline_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessed_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    topk_evaluation: InputArtifact[standard_artifacts.ModelEvaluation],
    blessing: InputArtifact[standard_artifacts.ModelBlessing],
    pushed_model: InputArtifact[standard_artifacts.PushedModel],
    eval_sample: InputArtifact[standard_artifacts.Examples],
    report: OutputArtifact[EvaluationReport],
    eval_settings: Parameter[str],
) -> None:
    """Writes the report; `eval_settings` is configs.EvalSettings as JSON."""
    pushed = (pushed_model.mlmd_artifact.custom_properties.get("pushed")
              and pushed_model.get_int_custom_property("pushed") == 1)
    failures = blessing.get_string_custom_property(blessing_gate.FAILURES_KEY)
    write_report(
        report.uri, results.load_evaluation(baseline_evaluation.uri),
        results.load_evaluation(blessed_evaluation.uri),
        topk.TopKEvaluation.load(topk_evaluation.uri),
        blessed=blessing.get_int_custom_property(blessing_gate.BLESSED_KEY) == 1,
        failures=[f for f in failures.split("\n") if f],
        pushed_to=(pushed_model.get_string_custom_property("pushed_destination")
                   if pushed else None),
        settings=json.loads(eval_settings),
        already_served=bool(pushed and pushed_model.mlmd_artifact.custom_properties.get(
            IDENTICAL_KEY) and pushed_model.get_int_custom_property(IDENTICAL_KEY) == 1),
        choices=load_training_choices(
            blessing.get_string_custom_property(blessing_gate.CURRENT_MODEL_URI_KEY)),
        sample=SampleInfo.load(eval_sample.uri))
