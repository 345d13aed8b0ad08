"""What the Trainer chose on its validation data, as the exported model records it
(models/trainer.py, training_choices) and the report and the run summary print it
(components/evaluation/report_gen.py, pipeline/run_summary.py)."""

import dataclasses
import json

from components.evaluation import report_gen
from models import contract, item_item_training, new_users, trainer, warm_start
from pipeline import run_summary


class _Module:
    """The attributes training_choices reads of fit_serving_module's ServingModule."""

    def __init__(self, drift, popularity_weight, new_user=None, dropouts=None, item=None,
                 start=None, epochs=None):
        self.model = type("Model", (), {"drift_choice": drift, "new_user_choice": new_user,
                                        "warm_start": start, "epochs": epochs})()
        self.popularity_weight = popularity_weight
        self.history_dropout_ndcg = dropouts
        self.item_item_choice = item


def test_the_choices_round_trip_through_the_model_folder_into_one_summary_line(tmp_path):
    drift = trainer.DriftChoice(25, 20.0, {"off": 0.91234, "10/5": 0.9101, "25/20": 0.90111})
    new_user = new_users.NewUserChoice("mean", 5.0, "700 ratings by 12 users new in the last "
                                       "10% of the training period",
                                       {"mean/2": 1.02, "mean/5": 1.01234, "debiased/5": 1.03},
                                       {"mean/2": 0.79, "mean/5": 0.78772, "debiased/5": 0.80})
    serving = tmp_path / "Format-Serving"
    dropouts = {"0.5": 0.16094, "0.7": 0.1559}
    item = item_item_training.ItemItemChoice(
        400.0, -0.1, 0.25, {"200/0/0.25/0": 0.165, "400/-0.1/0.25/3": 0.16972}, 12.5,
        side_weight=3.0)
    start = warm_start.WarmStart("/blessed/1", {"users": [600, 610], "movies": [9000, 9100]})
    trainer.write_choices(
        str(serving), _Module(drift, 0.2, new_user, dropouts, item, start, epochs=4),
        time_split=True)
    written = json.loads((serving / contract.CHOICES_FILE).read_text())
    assert written == {"warm_start": dataclasses.asdict(start), "rating_epochs": 4,
                       "drift_validated_for": "the future (time split)",
                       "user_drift": dataclasses.asdict(drift),
                       "new_users": dataclasses.asdict(new_user), "popularity_weight": 0.2,
                       "history_dropout_ndcg": dropouts, "item_item": item.record()}
    choices = report_gen.load_training_choices(str(tmp_path))
    assert report_gen.format_choices(choices) == (
        "Trainer's choices on its validation data: user drift window 25, shrinkage 20 (validation"
        " RMSE 0.9011, 0.9123 without); new users get each movie's mean rating shrunk by 5 "
        "(validation MAE 0.7877, RMSE 1.0123 on 700 ratings by 12 users new in the last 10% of "
        "the training period); recommend's popularity weight 0.2; retrieval history dropout 0.5 "
        "(validation NDCG@10 0.1609; 0.7: 0.1559); item-item stage l2 400, popularity exponent "
        "-0.1, user weight 0.25, side weight 3 (validation NDCG@10 0.1697); rating model "
        "warm-started from the serving model: 600 of 610 users and 9000 of 9100 movies kept "
        "their rows")
    assert report_gen.load_training_choices(str(tmp_path / "elsewhere")) is None
    summary = run_summary.RunSummary(run_id="r", training_choices=choices)
    assert report_gen.format_choices(choices) in run_summary.format_summary(summary).split("\n")


def test_a_new_user_choice_recorded_before_validation_mae_still_reads():
    record = {"kind": "debiased", "shrinkage": 2.0, "validated_on": "55 users",
              "validation_rmse": {"debiased/2": 1.0374}}
    assert report_gen.format_choices({"new_users": record}).endswith(
        "new users get each movie's bias net of its raters' biases shrunk by 2 (validation "
        "RMSE 1.0374 on 55 users)")


def test_an_item_item_record_from_before_the_side_weight_still_reads():
    record = {"l2": 400.0, "popularity_exponent": -0.1, "user_weight": 0.25,
              "validation_ndcg": {"200/0/0.25": 0.165, "400/-0.1/0.25": 0.16972},
              "interactions": 80_000}
    assert report_gen.format_choices({"item_item": record}).endswith(
        "item-item stage l2 400, popularity exponent -0.1, user weight 0.25, side weight 0 "
        "(validation NDCG@10 0.1697)")


def test_two_stages_chosen_alike_in_other_times_write_the_same_choices(tmp_path):
    """The exported model's identity covers its training choices: wall-clock seconds in them
    made two identical retrains two models, and the Pusher pushed the second (found on
    ml-latest-small with `--no-cache`)."""
    drift = trainer.DriftChoice(0, 0.0, {"off": 0.8})
    written = []
    for seconds in (15.41, 15.28):
        item = item_item_training.ItemItemChoice(400.0, -0.1, 0.25, {"400/-0.1/0.25/3": 0.28},
                                                 seconds, 80_000, seconds / 5, 3.0)
        folder = tmp_path / str(seconds)
        trainer.write_choices(str(folder), _Module(drift, None, item=item), time_split=False)
        written.append((folder / contract.CHOICES_FILE).read_bytes())
    assert written[0] == written[1]
    assert json.loads(written[0])["item_item"] == {
        "l2": 400.0, "popularity_exponent": -0.1, "user_weight": 0.25,
        "validation_ndcg": {"400/-0.1/0.25/3": 0.28}, "interactions": 80_000,
        "side_weight": 3.0}


def test_a_drift_left_out_and_no_retrieval_stage_are_said_so(tmp_path):
    off = trainer.DriftChoice(0, 0.0, {"off": 0.8, "10/5": 0.8005})
    choices = trainer.training_choices(_Module(off, None), time_split=False)
    assert choices["drift_validated_for"] == "a random split"
    assert report_gen.format_choices(choices) == (
        "Trainer's choices on its validation data: no user drift (validation RMSE 0.8000 "
        "without; no window did better)")
    unset = trainer.training_choices(_Module(None, None), time_split=False)
    assert report_gen.format_choices(unset).endswith("no user drift (not configured)")
