"""Issue 7: credit-risk models trained here, points, reason codes, policy, fairness, batch schema checks."""
import math

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import files, risk
from core.registry import Registry, registry


@pytest.fixture(scope="module")
def data():
    return risk.sample_data()


@pytest.fixture(scope="module")
def model(data):
    return risk.train(data, "Status", "bad")


# --- training and evaluation ---------------------------------------------------------------------

def test_training_reports_held_out_metrics_that_match_the_held_out_predictions(model, data):
    from sklearn.metrics import brier_score_loss, roc_auc_score

    test = model.test
    assert len(test) == round(0.25 * len(data)) and model.meta["train_rows"] + len(test) == len(data)
    for key in risk.METHODS:
        m = model.metrics[key]
        assert m["AUC"] == pytest.approx(roc_auc_score(test.bad, test[f"pd_{key}"]))
        assert m["Gini"] == pytest.approx(2 * m["AUC"] - 1)
        assert m["Brier"] == pytest.approx(brier_score_loss(test.bad, test[f"pd_{key}"]))
        assert m["AUC"] > 0.75  # both models rank far better than chance on this data


def test_calibration_lowers_the_brier_score_or_stays_within_noise(model):
    calibrated, raw = model.metrics["gbm"]["Brier"], model.metrics["gbm_uncalibrated"]["Brier"]
    change, se = model.metrics["calibration"]["brier_change"], model.metrics["calibration"]["brier_change_se"]
    assert change == pytest.approx(calibrated - raw)
    assert 0 < se < 0.01
    assert change <= 2 * se, f"calibration raised the Brier score by {change:.4f} (standard error {se:.4f})"


def test_ks_and_auc_on_a_hand_made_example():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    # ranked by p: bad, good, bad, good -> cumulative (bad share, good share): (.5, 0) (.5, .5) (1, .5) (1, 1)
    result = risk.evaluate(y, p)
    assert result["KS"] == pytest.approx(0.5)
    assert result["AUC"] == pytest.approx(0.75)  # 3 of the 4 bad/good pairs are ordered right
    assert result["Brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)


def test_the_split_keeps_train_and_test_apart(model):
    train_rows = set(model.background.index)
    assert not train_rows & set(model.test.index)


# --- points ----------------------------------------------------------------------------------------

def test_points_follow_the_stated_scaling():
    assert risk.score_from_pd(1 / 51) == pytest.approx(600)  # good:bad odds 50:1
    assert risk.score_from_pd(1 / 101) == pytest.approx(620)  # odds doubled to 100:1: 20 points more
    for s in (450.0, 512.5, 600.0, 700.0):
        assert risk.score_from_pd(risk.pd_from_score(s)) == pytest.approx(s)


def test_scores_are_monotone_in_the_probability_of_default(model):
    grid = np.linspace(0.001, 0.999, 500)
    assert np.all(np.diff(risk.score_from_pd(grid)) < 0)
    for key in risk.METHODS:
        p = model.test[f"pd_{key}"].to_numpy()
        order = np.argsort(p, kind="stable")
        assert np.all(np.diff(risk.score_from_pd(p[order])) <= 1e-9)


def test_scorecard_points_add_up_to_the_score(model):
    x = model.test[model.schema.features].head(50)
    total = model.scorecard.base_points + model.scorecard.points(x).sum(axis=1)
    np.testing.assert_allclose(total, risk.score_from_pd(model.probability_of_default(x, "scorecard")), atol=1e-6)


def test_gradient_boosting_reason_codes_add_up_and_point_at_the_changed_feature(model):
    x = model.test[model.schema.features].head(1)
    base, points = model.explain(x, "gbm")
    assert base + points.sum() == pytest.approx(float(risk.score_from_pd(model.probability_of_default(x, "gbm"))[0]), abs=1e-6)
    risky = x.copy()
    risky["Records"] = pd.Categorical(["yes"], categories=model.schema.categorical["Records"])
    safe = risky.copy()
    safe["Records"] = pd.Categorical(["no"], categories=model.schema.categorical["Records"])
    # having past payment records is the strongest warning sign in this data: it must cost points
    assert model.explain(risky, "gbm")[1]["Records"] < model.explain(safe, "gbm")[1]["Records"]


def test_a_scorecard_bin_never_seen_in_training_is_neutral(model):
    table = model.scorecard.table()
    unseen = table[table.applicants == 0]
    assert len(unseen) and (unseen.points == 0).all()


# --- policy and fairness -----------------------------------------------------------------------------

def test_policy_rates_add_up_and_match_a_direct_count(model):
    result = risk.policy(model.test, "gbm", approve_at=540, decline_below=500)
    assert sum(result[f"{b}_rate"] for b in risk.BANDS) == pytest.approx(1)
    scores = risk.score_from_pd(model.test.pd_gbm)
    approved = scores >= 540
    assert result["approve_rate"] == pytest.approx(approved.mean())
    assert result["observed_bad_rate"] == pytest.approx(model.test.bad[approved].mean())
    assert result["expected_bad_rate"] == pytest.approx(model.test.pd_gbm[approved].mean())
    stricter = risk.policy(model.test, "gbm", approve_at=580, decline_below=500)
    assert stricter["approve_rate"] < result["approve_rate"]


def test_fairness_by_age_group_counts_every_held_out_applicant(model):
    table = risk.fairness(model.test, "Age", "gbm", approve_at=540, decline_below=500)
    assert table.group.tolist() == ["under 25", "25–34", "35–44", "45–54", "55+"]
    assert table.applicants.sum() == len(model.test)
    young = model.test[model.test.Age < 25]
    expected = (risk.score_from_pd(young.pd_gbm) >= 540).mean()
    assert table.set_index("group").loc["under 25", "approval rate"] == pytest.approx(expected)
    by_home = risk.fairness(model.test, "Home", "scorecard", 540, 500)
    assert by_home.applicants.sum() == len(model.test) and by_home.AUC.dropna().between(0, 1).all()


# --- schema validation: each problem its own message -------------------------------------------------

def batch(data, n=6) -> pd.DataFrame:
    return data.drop(columns=["Status"]).head(n).astype(str).reset_index(drop=True)


def test_a_clean_batch_is_scored_and_keeps_extra_columns(model, data):
    frame = batch(data).assign(customer_id=[f"C{i}" for i in range(6)])
    scored, problems = risk.score_batch(model, frame, "scorecard", approve_at=540, decline_below=500)
    assert problems == []
    assert scored.customer_id.tolist() == frame.customer_id.tolist()
    assert scored.band.isin(risk.BANDS).all() and scored["top reasons"].str.len().gt(0).all()
    direct = model.probability_of_default(risk.features(frame, model.schema), "scorecard")
    np.testing.assert_allclose(scored.pd, direct, atol=5e-5)  # shown to four decimals


def test_missing_columns_are_named_and_nothing_is_scored(model, data):
    scored, problems = risk.score_batch(model, batch(data).drop(columns=["Income", "Job"]), "gbm", 540, 500)
    assert scored is None and [p.kind for p in problems] == ["missing columns"]
    assert "Income" in problems[0].message and "Job" in problems[0].message


def test_wrong_types_fail_only_their_rows(model, data):
    frame = batch(data)
    frame.loc[2, "Income"] = "lots"
    scored, problems = risk.score_batch(model, frame, "gbm", 540, 500)
    assert [p.kind for p in problems] == ["wrong type"]
    assert "Income" in problems[0].message and "row 4" in problems[0].message and problems[0].rows == [4]
    assert scored.band[2] == "not scored" and math.isnan(scored.pd[2]) and "Income" in scored.problem[2]
    assert scored.band.drop(2).isin(risk.BANDS).all()


def test_unknown_categories_are_scored_as_missing_with_a_note(model, data):
    frame = batch(data)
    frame.loc[1, "Home"] = "castle"
    scored, problems = risk.score_batch(model, frame, "gbm", 540, 500)
    assert [p.kind for p in problems] == ["unknown category"] and "castle" in problems[0].message
    missing = frame.copy()
    missing.loc[1, "Home"] = ""
    assert scored.pd[1] == pytest.approx(risk.score_batch(model, missing, "gbm", 540, 500)[0].pd[1])


def test_empty_cells_are_reported_and_scored(model, data):
    frame = batch(data)
    frame.loc[0, "Assets"] = ""
    frame.loc[3, "Marital"] = " "
    scored, problems = risk.score_batch(model, frame, "gbm", 540, 500)
    assert [p.kind for p in problems] == ["empty cells"] and problems[0].rows == [2, 5]
    assert "Assets" in problems[0].message and "Marital" in problems[0].message
    assert scored.band.isin(risk.BANDS).all()


def test_an_empty_file_says_so(model, data):
    scored, problems = risk.score_batch(model, batch(data).head(0), "gbm", 540, 500)
    assert scored is None and problems[0].kind == "empty file"


@pytest.mark.parametrize("target, bad, message", [
    ("Nope", "bad", "not in the table"), ("Home", "rent", "exactly two values"), ("Status", "awful", "is not a value"),
])
def test_training_refuses_a_target_it_cannot_use(data, target, bad, message):
    with pytest.raises(risk.SchemaError, match=message):
        risk.train(data, target, bad)


def test_training_refuses_too_few_rows(data):
    with pytest.raises(risk.SchemaError, match="at least 100"):
        risk.train(data.head(60), "Status", "bad")


@pytest.mark.slow
def test_training_on_an_uploaded_table_with_text_numbers_and_an_id_column(data):
    frame = data.sample(800, random_state=1).astype(str).assign(loan_id=[f"L{i}" for i in range(800)])
    frame.loc[frame.index[:5], "Income"] = ""  # empty cells in training
    model = risk.train(frame, "Status", "good")  # any value may be the "bad" one
    assert "loan_id" not in model.schema.features and "Income" in model.schema.numeric
    assert model.meta["bad_rate"] == pytest.approx((frame.Status == "good").mean())


@pytest.mark.parametrize("cells, numbers", [
    (["1,200", "3,400.5", "12", ""], [1200, 3400.5, 12, math.nan]),  # thousands separators
    (["1,5", "12,75", "1.000,5", "7"], [1.5, 12.75, 1000.5, 7]),  # a European table: decimal commas
    (["1,500", "2,5"], [1.5, 2.5]),  # "1,500" reads as the rest of its column does
    (["0.25", "1e3", "-4", "n/a"], [0.25, 1000, -4, math.nan]),
])
def test_numbers_written_as_text_keep_their_value(cells, numbers):
    np.testing.assert_allclose(files.numbers(pd.Series(cells, dtype=str)), numbers)


# --- the registry slot -----------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_slot_trains_once_into_the_store_then_loads_it(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHPAD_STORE", str(tmp_path))
    messages = []
    first = Registry(registry.specs()).get("credit_risk", messages.append)
    assert any("Training" in m for m in messages) and (tmp_path / "credit_risk" / "risk.joblib").is_file()
    messages.clear()
    second = Registry(registry.specs()).get("credit_risk", messages.append)
    assert not any("Training" in m for m in messages)
    assert second.model.metrics == first.model.metrics and second.meta["bytes"] > 0
    monkeypatch.setenv("LAUNCHPAD_CREDIT_RISK", str(tmp_path / "credit_risk"))  # a folder override
    override = Registry(registry.specs())
    assert override.get("credit_risk").model.metrics == first.model.metrics
    assert override.state("credit_risk").source.endswith("(override)")


# --- the page ---------------------------------------------------------------------------------------------

def page() -> AppTest:
    at = AppTest.from_file("../app.py", default_timeout=120).run()
    return at.switch_page("pages/credit_risk.py").run()


def test_page_shows_performance_and_scores_one_applicant():
    at = page()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.index) == ["Gradient boosting (calibrated)", "Logistic scorecard",
                                 "Gradient boosting, before calibration"]
    at.number_input(key="risk_in_Income").set_value(40.0)
    at.selectbox(key="risk_in_Records").set_value("yes")
    calls = registry.state("credit_risk").calls
    at.button[[b.label for b in at.button].index("Score this applicant")].click().run()
    assert not at.exception
    assert registry.state("credit_risk").calls > calls  # the Models page counts the page's calls
    labels = [m.label for m in at.metric]
    assert "Probability of default" in labels and "Score" in labels
    assert any("Reason codes" in m.value for m in at.markdown)


def test_page_batch_upload_reports_schema_problems_and_scores_the_rest(data):
    at = page()
    at.file_uploader(key="risk_batch_upload").set_value([("x.csv", b"a,b\n1,2\n", "text/csv")]).run()
    assert any("Missing column" in e.value for e in at.error)
    frame = batch(data)
    frame.loc[0, "Age"] = "forty"
    at.file_uploader(key="risk_batch_upload").set_value(
        [("applicants.csv", frame.to_csv(index=False).encode(), "text/csv")]).run()
    assert not at.exception
    assert any("must be a number" in w.value for w in at.warning)
    assert any("Scored 5 of 6" in s.value for s in at.success)


def test_page_trains_on_an_uploaded_table(data):
    at = page()
    at.segmented_control(key="risk_data").set_value(next(o for o in at.segmented_control(key="risk_data").options
                                                         if "own" in o)).run()
    assert any("Upload past applicants" in i.value for i in at.info)
    upload = data.sample(400, random_state=2).to_csv(index=False).encode("cp1252")
    at.file_uploader(key="risk_train_upload").set_value([("mine.csv", upload, "text/csv")]).run()
    assert at.selectbox(key="risk_target").value == "Status" and at.selectbox(key="risk_bad").value == "bad"
    at.button(key="risk_train").click().run()
    assert not at.exception and not at.error
    assert any("Trained on 300 applicants and tested on 100" in c.value for c in at.caption)


def test_infinite_and_absurd_numbers_are_flagged_and_not_scored():
    schema = risk.Schema("Status", "bad", ["Income"], {}, {"Income": (0.0, 500.0)}, {"Income": 100.0})
    frame = pd.DataFrame({"Income": ["120", "inf", "1e308", "-1e300", "90"]})
    clean, problems, reason = risk.validate(frame, schema)
    flagged = [p for p in problems if p.kind == "impossible number"]
    assert flagged and flagged[0].level == "row" and flagged[0].rows == [3, 4, 5]
    assert "finite number" in flagged[0].message
    assert reason.ne("").tolist() == [False, True, True, True, False]
    assert clean.Income.isna().tolist() == [False, True, True, True, False]


def test_fairness_findings_flag_the_four_fifths_rule_small_groups_and_nobody_approved():
    import pandas as pd

    def table(rows):
        return pd.DataFrame(rows, columns=["group", "applicants", "bad rate", "approval rate", "AUC"])

    fair = table([("young", 200, 0.3, 0.60, 0.7), ("old", 300, 0.2, 0.70, 0.7)])
    assert risk.fairness_findings(fair) == []  # 0.86 is above the rule's 0.8
    unfair = table([("young", 200, 0.3, 0.50, 0.7), ("old", 300, 0.2, 0.70, 0.7), ("tiny", 4, 0.0, 0.0, None)])
    found = risk.fairness_findings(unfair)
    assert len(found) == 2 and "'young'" in found[0] and "0.71" in found[0] and "'tiny' (4)" in found[1]
    assert "0.0" not in found[0]  # the tiny group's 0% is not the ratio the rule judges
    nobody = table([("a", 100, 0.3, 0.0, 0.7), ("b", 100, 0.2, 0.0, 0.7)])
    assert "Nobody" in risk.fairness_findings(nobody)[0]


def test_every_sample_column_says_what_it_means(model):
    assert set(model.schema.features) <= set(risk.SAMPLE_FIELDS)


def test_scored_csv_probabilities_are_rounded_to_four_decimals(model, data):
    scored, _ = risk.score_batch(model, batch(data, 50), risk.Method.SCORECARD, 540, 500)
    pd_ = scored["pd"].dropna()
    assert len(pd_) and (pd_ == pd_.round(4)).all() and (pd_ != pd_.round(2)).any()


@pytest.mark.parametrize("value", ["inf", "-inf", "Infinity", "1e999", "1e308"])
def test_a_batch_row_holding_an_infinite_or_absurd_number_is_not_scored(model, data, value):
    frame = batch(data)
    frame.loc[1, "Income"] = value
    scored, problems = risk.score_batch(model, frame, "gbm", 540, 500)
    assert [p.kind for p in problems] == ["impossible number"] and problems[0].rows == [3]
    assert scored.band[1] == "not scored" and math.isnan(scored.pd[1]) and math.isnan(scored.score[1])
    assert "Income" in scored.problem[1]
    assert scored.band.drop(1).isin(risk.BANDS).all() and np.isfinite(scored.pd.drop(1)).all()


# --- validation on its own, without a trained model (fast: `make mutate` runs these) ----------------------

SCHEMA = risk.Schema("Status", "bad", ["Income", "Age"], {"Job": ["clerk", "nurse", "pilot"]},
                     {"Income": (0.0, 500.0), "Age": (18.0, 80.0)}, {"Income": 100.0, "Age": 40.0}, {"Job": "nurse"})


def test_validation_says_what_is_wrong_with_each_row_in_its_own_words():
    frame = pd.DataFrame({"Income": ["120", "lots", "", "inf", "90", "x"], "Age": ["30", "old", "52", "", "63", "20"],
                          "Job": ["nurse", "astronaut", " pilot ", "clerk", "", "chef"], "extra": list("abcdef")})
    clean, problems, reason = risk.validate(frame, SCHEMA)
    assert list(clean.columns) == ["Income", "Age", "Job"]  # the model's features, extra columns left out
    assert clean.Income.tolist()[::4] == [120.0, 90.0] and clean.Income.isna().tolist() == [0, 1, 1, 1, 0, 1]
    assert clean.Age.isna().tolist() == [0, 1, 0, 1, 0, 0] and clean.Age[5] == 20.0
    assert clean.Job.astype(object).where(clean.Job.notna(), None).tolist() == ["nurse", None, "pilot", "clerk", None, None]
    assert list(clean.Job.cat.categories) == ["clerk", "nurse", "pilot"]
    assert [(p.kind, p.level, p.rows) for p in problems] == [
        ("impossible number", "row", [5]), ("wrong type", "row", [3, 7]), ("wrong type", "row", [3]),
        ("unknown category", "note", [3, 7]), ("empty cells", "note", [4, 5, 6])]
    assert [p.message for p in problems] == [
        "'Income' must be a finite number below 1e+15; row 5 holds 'inf'. Those rows were not scored: fix the values "
        "and upload again.",
        "'Income' must be a number; rows 3, 7 hold text such as 'lots'. Those rows were not scored: fix the values "
        "and upload again.",
        "'Age' must be a number; row 3 holds text such as 'old'. Those rows were not scored: fix the values and "
        "upload again.",
        "'Job' has value(s) the model never saw (astronaut, chef) in rows 3, 7; they were scored as missing. Known "
        "values: clerk, nurse, pilot.",
        "Empty cells in Income (1), Age (1), Job (1): rows 4, 5, 6 were scored with those values treated as missing "
        "(both models handle missing values)."]
    assert reason.tolist() == ["", "'Income' is not a number; 'Age' is not a number", "",
                               "'Income' is not a plausible number", "", "'Income' is not a number"]


def test_validation_refuses_missing_columns_and_empty_files_and_shortens_long_row_lists():
    _, problems, reason = risk.validate(pd.DataFrame({"Income": ["1"], "x": ["2"]}), SCHEMA)
    assert [(p.kind, p.level) for p in problems] == [("missing columns", "error")] and reason.tolist() == [""]
    assert problems[0].message == ("Missing column(s): Age, Job. The file needs every feature column the model was "
                                   "trained on: Income, Age, Job. Download the template for the expected header.")
    _, problems, reason = risk.validate(pd.DataFrame({"Income": [], "Age": [], "Job": []}), SCHEMA)
    assert [(p.kind, p.level) for p in problems] == [("empty file", "error")] and reason.empty
    assert problems[0].message == "The file has a header but no rows. Add applicants, one per row."
    many = pd.DataFrame({"Income": ["no"] * 13, "Age": ["1"] * 13, "Job": ["nurse"] * 13})
    _, problems, _ = risk.validate(many, SCHEMA)
    assert "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 3 more hold text such as 'no'" in problems[0].message
    assert problems[0].rows == list(range(2, 15))


@pytest.mark.parametrize("cells, blank", [(["", " ", "\t", "x", "0"], [1, 1, 1, 0, 0]), ([None, "a"], [1, 0])])
def test_blank_cells_are_empty_or_only_spaces(cells, blank):
    assert risk._is_blank(pd.Series(cells, dtype=object)).astype(int).tolist() == blank


def test_impossible_numbers_are_infinite_or_beyond_1e15_either_way():
    values = pd.Series([1e15, -1e15, 1.0000001e15, -2e15, np.inf, -np.inf, np.nan, 0.0])
    assert risk._impossible(values).tolist() == [False, False, True, True, True, True, False, False]


def test_validation_messages_shorten_samples_and_lists_and_keep_the_files_row_index():
    schema = risk.Schema("Status", "bad", ["Income"], {"Job": [f"job{i:02d}" for i in range(14)]})
    long = "x" * 40
    frame = pd.DataFrame({"Income": [long, "1e400", "-inf"] + ["1" + "0" * 39] + ["1"] * 7, "Job": [f"new{i}" for i in range(6)] + [""] * 5},
                         index=range(10, 21))
    clean, problems, reason = risk.validate(frame, schema)
    assert reason.index.tolist() == list(range(10, 21)) and clean.index.tolist() == list(range(10, 21))
    impossible, wrong, unknown, empty = problems
    assert "rows 3, 4, 5 hold '1e400'" in impossible.message  # more than one row: "hold"
    huge = risk.validate(frame.iloc[3:4], schema)[1][0].message
    assert f"row 2 holds '1{'0' * 29}'. Those" in huge  # cut at 30 characters (rows count from the header)
    assert f"row 2 holds text such as '{'x' * 30}'. Those" in wrong.message  # a long cell is cut at 30 characters
    assert "(new0, new1, new2, new3, new4) in rows 2, 3, 4, 5, 6, 7;" in unknown.message  # five values at most
    assert "Known values: " + ", ".join(f"job{i:02d}" for i in range(12)) + "." in unknown.message  # twelve at most
    assert list(clean.Job.cat.categories) == schema.categorical["Job"]  # every known job, seen in this file or not
    assert "rows 8, 9, 10, 11, 12 were scored" in empty.message
    ten = risk.validate(pd.DataFrame({"Income": ["no"] * 10, "Job": ["job00"] * 10}), schema)[1][0].message
    eleven = risk.validate(pd.DataFrame({"Income": ["no"] * 11, "Job": ["job00"] * 11}), schema)[1][0].message
    assert "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 hold" in ten and "more" not in ten
    assert "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 and 1 more hold" in eleven
    missing = risk.validate(pd.DataFrame({"Other": ["1", "2"]}, index=[5, 6]), schema)[2]
    assert missing.index.tolist() == [5, 6] and missing.tolist() == ["", ""]
