"""The whole TFX pipeline on a generated MovieLens folder, with LocalDagRunner and Beam.

Four runs share one metadata store: a good model is blessed and pushed; a second run compares
the candidate with the first run's blessed model (and blesses it again); a third run is served
from the cache; a deliberately bad candidate (untrained) is refused, not pushed, and the summary
names the failed rules, the top-k rules' included, each with the interval of its change. Data
with an out-of-range year stops before Transform with a message naming the feature (an
out-of-range rating would not: the ExampleGen quarantines that row, tests/test_example_gen.py).
"""

import collections
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from movielens_fixture import write_movielens_fixture
from pipelines import local_pipeline, serving_model_dir
from tfx.orchestration.local.local_dag_runner import LocalDagRunner

from components.anomalies_gate import DataAnomaliesError
from components.evaluation import bootstrap, results, topk
from components.evaluation.metrics import RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES
from components.evaluation.report_gen import REPORT_FILE, TOPK_PLOT_FILE
from components.movielens_example_gen import parsing, slicing
from models import contract, features, ranking_metrics
from pipeline import configs, run_summary
from pipeline import pipeline as pl
from pipeline.pipeline import COMPONENT_IDS

pytestmark = pytest.mark.e2e

COMPONENTS = set(COMPONENT_IDS)
# The fixture's genres have 60-100 eval ratings: check the genre rule on those with >= 50.
EVAL_SETTINGS = dataclasses.replace(configs.EVAL, genre_min_examples=50)
BAD_HPARAMS = dataclasses.replace(configs.HPARAMS, **configs.FORCED_BAD_MODEL_OVERRIDES)


def run_pipeline(data_dir, root, hparams=configs.HPARAMS, eval_settings=configs.EVAL):
    LocalDagRunner().run(local_pipeline(data_dir, root, hparams=hparams,
                                        eval_settings=eval_settings))


@dataclasses.dataclass
class Run:
    summary: run_summary.RunSummary
    states: dict[str, str]  # component id -> execution state
    outputs: dict  # component id -> output artifacts (MLMD protos)

    def output(self, node, type_name):
        return next(a for a in self.outputs[node] if a.type == type_name)


def latest_run(root) -> Run:
    path = str(root / "metadata.sqlite")
    summary = run_summary.summarize_latest_run(path)
    store = run_summary.open_store(path)
    run_context = max(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.id)
    return Run(summary, {node: state for node, (state, _) in summary.components.items()},
               run_summary.node_outputs(store, run_context.id))


def executions_of_latest_run(root):
    """{component id: execution state name} for the newest pipeline run in root's metadata."""
    return latest_run(root).states


def pushed_versions(root):
    base = serving_model_dir(root)
    return sorted(base.iterdir()) if base.exists() else []  # none before a first push


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    # User 999 rates only after everyone else: cold start, the "0" activity bucket.
    data_dir = write_movielens_fixture(root / "data", n_users=100, ratings_per_user=(25, 50),
                                       extra_rating_rows=["999,3,4.0,1300000000",
                                                          "999,6,3.5,1300000001"])
    history = {}
    for name, hparams in (("first", configs.HPARAMS), ("second", configs.HPARAMS),
                          ("third", configs.HPARAMS), ("bad", BAD_HPARAMS)):
        run_pipeline(data_dir, root, hparams=hparams, eval_settings=EVAL_SETTINGS)
        history[name] = latest_run(root)
        history[name].versions = pushed_versions(root)
    return root, data_dir, history


def test_every_component_ran(runs):
    _, _, history = runs
    assert history["first"].states == {node: "COMPLETE" for node in COMPONENTS}


def test_the_model_was_blessed_and_pushed_with_genre_metrics(runs):
    root, _, history = runs
    summary = history["first"].summary
    assert summary.blessed is True and summary.failures == []
    versions = history["first"].versions
    assert len(versions) == 1 and versions[0].name.isdigit()
    assert summary.pushed_to == str(versions[0])
    assert (versions[0] / "saved_model.pb").is_file()
    overall = summary.metrics["overall"]
    assert overall[results.RMSE] < overall["baseline_rmse"] - EVAL_SETTINGS.\
        min_improvement_over_baseline
    assert {"Drama", "Comedy", "(no genres listed)"} <= set(summary.metrics)
    assert sum(m[results.EXAMPLE_COUNT] for k, m in summary.metrics.items() if k != "overall") \
        >= overall[results.EXAMPLE_COUNT]  # multi-valued: a movie counts in each of its genres
    # Top-k: the candidate ranks better than the most-rated movies; nothing blessed before.
    top_k = summary.top_k
    assert top_k.models == [results.CANDIDATE, results.POPULARITY]
    assert top_k.value(results.CANDIDATE, topk.OVERALL, results.NDCG) >= top_k.value(
        results.POPULARITY, topk.OVERALL, results.NDCG) + EVAL_SETTINGS.min_ndcg_over_popularity
    assert top_k.counts[topk.OVERALL]["users"] >= 90 and top_k.cold_start_users == 1


def test_the_pushed_model_answers_both_signatures(runs):
    root, *_ = runs
    version = next(serving_model_dir(root).iterdir())
    model = tf.saved_model.load(str(version))
    users, movies = [1, 2, 3, 999999], [3, 6, 9, 3]  # 999999: a user never seen
    examples = [contract.tf_example({contract.USER_ID: u, contract.MOVIE_ID: m})
                .SerializeToString() for u, m in zip(users, movies, strict=True)]
    from_examples = model.signatures[contract.SERVING_DEFAULT](
        examples=tf.constant(examples))[contract.RATING]
    from_ids = model.signatures[contract.PREDICT_IDS](
        user_id=tf.constant(users, tf.int64),
        movie_id=tf.constant(movies, tf.int64))[contract.RATING]
    assert from_examples.shape == (4,)
    assert tf.reduce_all((from_examples >= 0.5) & (from_examples <= 5.0))
    assert from_examples.numpy() == pytest.approx(from_ids.numpy(), abs=1e-6)


def test_the_second_run_compares_with_the_first_runs_blessed_model(runs):
    _, _, history = runs
    first, second = history["first"], history["second"]
    first_model = first.output(pl.TRAINER_ID, "Model")
    # The first run had nothing to compare with: that rule was skipped, not failed.
    assert results.load_evaluation(
        first.output(pl.BLESSED_MODEL_EVALUATOR_ID, "ModelEvaluation").uri).baseline is None
    # The second run resolved the first run's blessed model and evaluated the candidate against it.
    assert second.states[pl.BLESSED_MODEL_EVALUATOR_ID] == "COMPLETE"
    evaluation = results.load_evaluation(
        second.output(pl.BLESSED_MODEL_EVALUATOR_ID, "ModelEvaluation").uri)
    assert evaluation.baseline == results.LATEST_BLESSED and evaluation.validation_ok
    blessing = second.output(pl.BLESSED_MODEL_EVALUATOR_ID, "ModelBlessing")
    assert blessing.custom_properties["baseline_model_id"].int_value == first_model.id
    # Unchanged inputs: the Trainer was a cache hit, so the candidate is that same model.
    assert second.states[pl.TRAINER_ID] == "CACHED"
    overall = second.summary.metrics["overall"]
    assert overall["blessed_rmse"] == pytest.approx(overall[results.RMSE], abs=1e-9)
    top_k = second.summary.top_k
    assert top_k.models == [results.CANDIDATE, results.POPULARITY, results.LATEST_BLESSED]
    assert top_k.metrics[results.LATEST_BLESSED] == top_k.metrics[results.CANDIDATE]
    assert second.output(pl.TOPK_EVALUATOR_ID, "ModelBlessing").custom_properties[
        "baseline_model_id"].int_value == first_model.id
    # Blessed again, but it is the model already served: no second version of the same files.
    assert second.summary.blessed is True and second.summary.already_served
    assert second.versions == first.versions
    assert second.summary.pushed_to == first.summary.pushed_to
    assert "already served as" in run_summary.format_summary(second.summary)


def test_a_third_run_with_unchanged_inputs_is_served_from_the_cache(runs):
    _, _, history = runs
    # A Resolver is never cached: it queries ML Metadata on every run (same answer here).
    assert history["third"].states == {
        node: "COMPLETE" if node == "LatestBlessedModelResolver" else "CACHED"
        for node in COMPONENTS}
    assert history["third"].versions == history["second"].versions


def test_a_bad_model_is_refused_and_not_pushed_with_the_failed_thresholds_named(runs):
    _, _, history = runs
    bad = history["bad"]
    assert bad.states[pl.TRAINER_ID] == "COMPLETE"
    assert bad.states[pl.BASELINE_TRAINER_ID] == "CACHED"
    assert bad.summary.blessed is False
    assert bad.summary.pushed_to is None
    assert bad.output(pl.PUSHER_ID, "PushedModel").custom_properties["pushed"].int_value == 0
    assert bad.versions == history["third"].versions
    text = run_summary.format_summary(bad.summary)
    assert "Model NOT blessed" in text and "Nothing was pushed" in text
    # Worse than the bias baseline overall and on genres, and worse than the blessed model, in
    # rating error and in top-k ranking (an untrained model ranks at random).
    for setting in ("min_improvement_over_baseline", "max_regression_vs_blessed",
                    "genre_tolerance", "min_ndcg_over_popularity",
                    "max_ndcg_regression_vs_blessed"):
        assert f"EvalSettings.{setting}" in text, setting
    # Each refused on evidence: the change's interval lies wholly beyond the allowed change.
    assert bad.summary.failures
    for line in bad.summary.failures:
        assert "% interval " in line and "the whole interval is" in line, line
    overall = bad.summary.metrics["overall"]
    assert overall[results.RMSE] > overall["baseline_rmse"]
    ndcg = {m: bad.summary.top_k.value(m, topk.OVERALL, results.NDCG)
            for m in bad.summary.top_k.models}
    assert ndcg[results.CANDIDATE] < ndcg[results.POPULARITY] - 0.05
    assert ndcg[results.CANDIDATE] < ndcg[results.LATEST_BLESSED] - 0.05
    assert bad.output(pl.TOPK_EVALUATOR_ID, "ModelBlessing").custom_properties[
        "blessed"].int_value == 0
    # Compared with the last good model; the refused one will not be the next run's reference.
    blessing = bad.output(pl.BLESSED_MODEL_EVALUATOR_ID, "ModelBlessing")
    assert blessing.custom_properties["baseline_model_id"].int_value == \
        history["first"].output(pl.TRAINER_ID, "Model").id
    gate_blessing = bad.output(pl.BLESSING_GATE_ID, "ModelBlessing")
    assert gate_blessing.custom_properties["blessed"].int_value == 0


def test_the_report_shows_the_verdict_rules_and_slices(runs):
    _, _, history = runs
    good, bad = history["second"].summary, history["bad"].summary
    text = open(good.report_path).read()
    assert text.startswith("# Evaluation report: model BLESSED")
    assert f"It is the model already served from `{good.pushed_to}`" in text
    first_report = open(history["first"].summary.report_path).read()
    assert f"Pushed to `{history['first'].summary.pushed_to}`" in first_report
    for genre in features.GENRE_NAMES:
        assert f"| {genre} |" in text, genre
    for bucket in ("| 0 |", "| 1-19 |", "| 20-100 |"):
        assert bucket in text
    assert "RMSE latest blessed model" in text
    for feature in (features.GENRES, features.USER_ACTIVITY, features.MOVIE_POPULARITY):
        png = open(good.report_path.replace(REPORT_FILE, f"rmse_by_{feature}.png"), "rb").read()
        assert png.startswith(b"\x89PNG") and len(png) > 5000, feature
    k = EVAL_SETTINGS.topk_k
    assert f"## Top-{k} recommendations" in text
    for model in ("candidate", "popularity baseline", "latest blessed model"):
        assert f" | {model} | " in text, model
    assert f"| **overall** | {good.top_k.counts[topk.OVERALL]['users']} |" in text
    png = open(good.report_path.replace(REPORT_FILE, TOPK_PLOT_FILE), "rb").read()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    summary_text = run_summary.format_summary(good)
    assert f"Top-{k} recommendations for the {good.top_k.counts[topk.OVERALL]['users']} users" \
        in summary_text
    assert summary_text.index("Top-") > summary_text.index("Eval split, candidate")
    bad_text = open(bad.report_path).read()
    assert bad_text.startswith("# Evaluation report: model NOT BLESSED")
    assert "EvalSettings.min_improvement_over_baseline" in bad_text
    assert "EvalSettings.min_ndcg_over_popularity" in bad_text


def _split_records(run, split):
    uri = run.output(pl.EXAMPLE_GEN_ID, "Examples").uri
    files = tf.io.gfile.glob(f"{uri}/Split-{split}/*")
    return [r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _int(feature, key):
    return feature[key].int64_list.value[0]


def test_genre_and_activity_slice_metrics_equal_a_computation_by_hand(runs):
    _, data_dir, history = runs
    first = history["first"]
    records = _split_records(first, "eval")
    parsed = [tf.train.Example.FromString(r).features.feature for r in records]
    labels = np.array([f[features.RATING].float_list.value[0] for f in parsed])
    # Genres from the fixture's movies.csv; activity from the users' train-split ratings.
    movies = parsing.read_movies_file(str(data_dir / "movies.csv"))[0]
    genres = [movies[_int(f, features.MOVIE_ID)].genres for f in parsed]
    train_counts = collections.Counter(
        _int(tf.train.Example.FromString(r).features.feature, features.USER_ID)
        for r in _split_records(first, "train"))
    activity = np.array([slicing.bucket_label(train_counts[_int(f, features.USER_ID)],
                                              EVAL_SETTINGS.user_activity_edges)
                         for f in parsed])
    users = np.array([_int(f, features.USER_ID) for f in parsed])
    evaluation = results.load_evaluation(first.output(pl.EVALUATOR_ID, "ModelEvaluation").uri)
    predicted = {}
    for node, model in ((pl.TRAINER_ID, results.CANDIDATE),
                        (pl.BASELINE_TRAINER_ID, results.BIAS_BASELINE)):
        saved = tf.saved_model.load(f"{first.output(node, 'Model').uri}/Format-Serving")
        predicted[model] = saved.signatures[contract.SERVING_DEFAULT](
            examples=tf.constant(records))[contract.RATING].numpy().reshape(-1)
    slices = [((features.GENRES, g), np.array([g in gs for gs in genres]))
              for g in ("Drama", features.NO_GENRES)]
    slices += [((features.USER_ACTIVITY, b), activity == b) for b in set(activity)]
    s = EVAL_SETTINGS
    for key, member in slices:
        squared = {}
        for model, prediction in predicted.items():
            squared[model] = (prediction[member] - labels[member]) ** 2
            assert evaluation.value(key, model, results.EXAMPLE_COUNT) == member.sum(), key
            assert evaluation.value(key, model, results.RMSE) == pytest.approx(
                float(np.sqrt(np.mean(squared[model]))), rel=1e-4)
        # The rules' metric: the paired bootstrap over the slice's users, as computed here.
        ids, per_user = np.unique(users[member], return_inverse=True)
        sums = {m: np.bincount(per_user, weights=v, minlength=len(ids))
                for m, v in squared.items()}
        expected = bootstrap.error_change(
            np.bincount(per_user, minlength=len(ids)), sums[results.CANDIDATE],
            sums[results.BIAS_BASELINE], True, s.bootstrap_samples, s.confidence,
            s.bootstrap_seed)
        interval = evaluation.interval(key)
        for name in ("change", "lower", "upper"):
            assert getattr(interval, name) == pytest.approx(getattr(expected, name),
                                                            rel=1e-3, abs=1e-5), (key, name)
        if key[0] == features.GENRES:
            # The genre rule's metric: the lower end where the genre has enough ratings, else 0.
            gated = expected.lower if member.sum() >= s.genre_min_examples else 0.0
            assert evaluation.value(key, results.CANDIDATE,
                                    RMSE_CHANGE_LOWER_IF_ENOUGH_EXAMPLES) == \
                pytest.approx(gated, rel=1e-3, abs=1e-5)


def test_top_k_metrics_equal_a_computation_by_hand(runs):
    _, _, history = runs
    first = history["first"]
    k, edges = EVAL_SETTINGS.topk_k, EVAL_SETTINGS.user_activity_edges

    def pairs(split):
        return [(_int(f, features.USER_ID), _int(f, features.MOVIE_ID)) for f in (
            tf.train.Example.FromString(r).features.feature for r in _split_records(first, split))]

    seen, relevant = collections.defaultdict(set), collections.defaultdict(set)
    for user, movie in pairs("train"):
        seen[user].add(movie)
    for user, movie in pairs("eval"):
        relevant[user].add(movie)
    users = sorted(set(seen) & set(relevant))
    counts = collections.Counter(movie for _, movie in pairs("train"))
    popular = sorted(counts, key=lambda m: (-counts[m], m))
    lists = {results.POPULARITY: [[m for m in popular if m not in seen[u]][:k] for u in users]}
    saved = tf.saved_model.load(f"{first.output(pl.TRAINER_ID, 'Model').uri}/Format-Serving")
    lists[results.CANDIDATE] = saved.signatures[contract.RECOMMEND](
        user_id=tf.constant(users, tf.int64),
        k=tf.fill([len(users)], k))[contract.MOVIE_IDS].numpy()
    assert all(not set(row) & seen[u] for row, u in zip(lists[results.CANDIDATE], users,
                                                        strict=True))
    buckets = np.array([slicing.bucket_label(len(seen[u]), edges) for u in users])
    top_k = first.summary.top_k
    for model, rows in lists.items():
        ndcg = ranking_metrics.per_user(rows, [relevant[u] for u in users], k)["ndcg"]
        assert top_k.value(model, topk.OVERALL, results.NDCG) == pytest.approx(ndcg.mean())
        for bucket in set(buckets):
            assert top_k.value(model, bucket, results.NDCG) == pytest.approx(
                ndcg[buckets == bucket].mean()), (model, bucket)
            assert top_k.counts[bucket]["users"] == (buckets == bucket).sum()


def test_anomalous_data_stops_the_pipeline_before_transform(tmp_path):
    # A year outside the schema's 1870..2100: a valid row the validator, not the ExampleGen, stops.
    data_dir = write_movielens_fixture(tmp_path / "data",
                                       extra_rating_rows=["1,9999,4.0,1200000001"])
    with open(data_dir / "movies.csv", "a", newline="", encoding="utf-8") as f:
        f.write("9999,Ancient (1800),Drama\r\n")
    with pytest.raises(DataAnomaliesError) as e:
        run_pipeline(data_dir, tmp_path)
    assert "feature 'year'" in str(e.value)
    assert "Out-of-range" in str(e.value) or "out of range" in str(e.value).lower()
    ran = executions_of_latest_run(tmp_path)
    assert pl.TRANSFORM_ID not in ran and pl.TRAINER_ID not in ran
    assert ran[pl.ANOMALIES_GATE_ID] == "FAILED"
    assert not (tmp_path / "serving_model").exists()
