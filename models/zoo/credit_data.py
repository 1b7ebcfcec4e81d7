"""Synthetic consumer-credit data with known true effects (the `credit-risk` zoo model).

No real credit data set ships with the packages available here, so this generator draws
applicants from a documented process and labels them with a logistic model whose
coefficients are stated below (and in the model card): they are the known answers against
which explanations and bias audits can be checked.

The log-odds of default are

    z = INTERCEPT
        + COEF["income"] * log(income / 40000)
        + COEF["debt_to_income"] * (debt_to_income - 0.3)
        + COEF["utilisation"] * (utilisation - 0.4)
        + COEF["delinquencies"] * delinquencies
        + COEF["history_length_years"] * (history_length_years - 10)
        + EMPLOYMENT_EFFECT[employment_type] + PURPOSE_EFFECT[loan_purpose]
        + AGE_BAND_EFFECT[age_band]

and `default ~ Bernoulli(sigmoid(z))`. AGE_BAND_EFFECT is the documented GROUP EFFECT: the
"18-25" band defaults more often beyond what the other features explain (young applicants
also have shorter histories and lower incomes, so part of their excess rate is explained
by those features and part is not). Categorical features are returned as integer codes
(their index in the category lists below), as the model receives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUMERIC_FEATURES = (
    "income",
    "debt_to_income",
    "utilisation",
    "delinquencies",
    "history_length_years",
)
EMPLOYMENT_TYPES = ("salaried", "self-employed", "contract", "unemployed")
LOAN_PURPOSES = ("home", "car", "education", "debt-consolidation", "other")
AGE_BANDS = ("18-25", "26-35", "36-50", "51-65", "66+")
CATEGORICAL_FEATURES: dict[str, tuple[str, ...]] = {
    "employment_type": EMPLOYMENT_TYPES,
    "loan_purpose": LOAN_PURPOSES,
    "age_band": AGE_BANDS,
}
FEATURES = NUMERIC_FEATURES + tuple(CATEGORICAL_FEATURES)

# True effects on the log-odds of default (see the module docstring for the centring).
INTERCEPT = -2.0
COEF: dict[str, float] = {
    "income": -0.8,  # per unit of log(income / 40000)
    "debt_to_income": 3.0,  # per unit of ratio
    "utilisation": 2.0,  # per unit of fraction
    "delinquencies": 0.5,  # per delinquency
    "history_length_years": -0.04,  # per year
}
EMPLOYMENT_EFFECT = dict(zip(EMPLOYMENT_TYPES, (0.0, 0.3, 0.4, 0.9), strict=True))
PURPOSE_EFFECT = dict(zip(LOAN_PURPOSES, (-0.3, 0.0, 0.2, 0.5, 0.2), strict=True))
AGE_BAND_EFFECT = dict(zip(AGE_BANDS, (0.7, 0.0, 0.0, 0.0, 0.0), strict=True))

# Sampling distributions (probabilities in category order).
AGE_BAND_PROBS = (0.15, 0.25, 0.30, 0.20, 0.10)
AGE_BAND_YEARS = ((18, 26), (26, 36), (36, 51), (51, 66), (66, 81))  # [low, high) in years
EMPLOYMENT_PROBS = (0.60, 0.15, 0.15, 0.10)
PURPOSE_PROBS = (0.25, 0.25, 0.10, 0.25, 0.15)

# Valid ranges of the numeric features (inclusive), in their own units.
RANGES: dict[str, tuple[float, float]] = {
    "income": (5000.0, 500000.0),
    "debt_to_income": (0.0, 2.0),
    "utilisation": (0.0, 1.0),
    "delinquencies": (0.0, 20.0),
    "history_length_years": (0.0, 63.0),
}
UNITS: dict[str, str] = {
    "income": "EUR/year",
    "debt_to_income": "ratio",
    "utilisation": "fraction",
    "delinquencies": "count (last 2 years)",
    "history_length_years": "years",
    "employment_type": "",
    "loan_purpose": "",
    "age_band": "years",
}

# Fixed split: training and test sets come from separate seeds.
TRAIN_SEED, TRAIN_SIZE = 1, 8000
TEST_SEED, TEST_SIZE = 2, 4000


@dataclass(frozen=True)
class CreditData:
    """Applicants `x` (N, 8) float32 in FEATURES order, labels `y` (N,) (1 = default)."""

    x: np.ndarray
    y: np.ndarray
    true_log_odds: np.ndarray  # (N,) the generator's z, for checking explanations


def true_log_odds(x: np.ndarray) -> np.ndarray:
    """The generator's log-odds of default for rows `x` (N, 8) in FEATURES order."""
    col = {name: x[:, i].astype(np.float64) for i, name in enumerate(FEATURES)}
    z = INTERCEPT + COEF["income"] * np.log(col["income"] / 40000.0)
    z += COEF["debt_to_income"] * (col["debt_to_income"] - 0.3)
    z += COEF["utilisation"] * (col["utilisation"] - 0.4)
    z += COEF["delinquencies"] * col["delinquencies"]
    z += COEF["history_length_years"] * (col["history_length_years"] - 10.0)
    for name, effect in (
        ("employment_type", EMPLOYMENT_EFFECT),
        ("loan_purpose", PURPOSE_EFFECT),
        ("age_band", AGE_BAND_EFFECT),
    ):
        table = np.array([effect[c] for c in CATEGORICAL_FEATURES[name]])
        z += table[col[name].astype(np.int64)]
    return z


def generate(n: int, seed: int) -> CreditData:
    """Draw `n` applicants and their default outcomes with `numpy.random.default_rng(seed)`."""
    rng = np.random.default_rng(seed)
    age_band = rng.choice(len(AGE_BANDS), size=n, p=AGE_BAND_PROBS)
    bounds = np.array(AGE_BAND_YEARS, dtype=np.float64)[age_band]
    age = rng.uniform(bounds[:, 0], bounds[:, 1])
    employment = rng.choice(len(EMPLOYMENT_TYPES), size=n, p=EMPLOYMENT_PROBS)
    purpose = rng.choice(len(LOAN_PURPOSES), size=n, p=PURPOSE_PROBS)
    history = np.round(rng.uniform(0.0, 1.0, n) * (age - 17.0), 1)
    # Income rises with age up to ~50; the unemployed draw benefits-level incomes.
    log_income = np.log(40000.0) + 0.02 * (np.minimum(age, 50.0) - 35.0)
    log_income += rng.normal(0.0, 0.45, n) - 1.2 * (
        employment == EMPLOYMENT_TYPES.index("unemployed")
    )
    income = np.round(np.exp(log_income), -2)
    debt_to_income = np.round(rng.gamma(2.0, 0.15, n), 3)
    utilisation = np.round(rng.beta(2.0, 3.0, n), 3)
    delinquencies = rng.poisson(0.2 + 0.6 * utilisation).astype(np.float64)
    x = np.stack(
        [
            income,
            debt_to_income,
            utilisation,
            delinquencies,
            history,
            employment,
            purpose,
            age_band,
        ],
        axis=1,
    )
    for i, name in enumerate(NUMERIC_FEATURES):
        low, high = RANGES[name]
        x[:, i] = np.clip(x[:, i], low, high)
    z = true_log_odds(x)
    y = (rng.uniform(0.0, 1.0, n) < 1.0 / (1.0 + np.exp(-z))).astype(np.int64)
    return CreditData(x=x.astype(np.float32), y=y, true_log_odds=z)
