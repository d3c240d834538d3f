"""Scores of compared pairs, explainable feature by feature.

Two models, one shape: each gives every feature outcome (agree / disagree) a **match weight**
in bits, a missing field weighs 0, and a pair's score is the probability of a match from the sum
of its weights and the model's prior (``score = 1 / (1 + 2 ** -(prior + sum(weights)))``).

* ``FellegiSunter``: unsupervised, fitted by recordlinkage's ECM on the candidate pairs
  themselves; a weight is ``log2(m / u)`` (how much likelier the outcome is for a match than for
  a non-match). Works out of the box, with no labels.
* ``Logistic``: a logistic regression trained on stewards' approve / reject decisions once there
  are enough of them; its coefficients (log-odds, shown in bits) are the weights.

Parameters are plain JSON (``as_json`` / ``model_from_json``) so a model version is a database
row, never a pickle. Pure module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import recordlinkage as rl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from identity.matching.comparing import FEATURE_NAMES

EPSILON = 1e-6
LN2 = math.log(2)
ECM = "ecm"
LOGISTIC = "logistic"


@dataclass
class Scored:
    scores: np.ndarray  # one per pair, in [0, 1]
    weights: pd.DataFrame  # pair x feature: the weight (bits) each outcome contributed


@dataclass
class Model:
    kind: str
    # feature -> (weight if it agrees, weight if it disagrees), bits; absent features weigh 0
    weights: dict[str, tuple[float, float]] = field(default_factory=dict)
    prior: float = 0.0  # bits: log2 odds of a match before any evidence

    def score(self, features: pd.DataFrame) -> Scored:
        contributions = pd.DataFrame(0.0, index=features.index, columns=list(FEATURE_NAMES))
        for name, (agree, disagree) in self.weights.items():
            values = features[name].to_numpy(dtype=float)
            contributions[name] = np.where(
                values == 1.0, agree, np.where(values == 0.0, disagree, 0.0)
            )
        total = self.prior + contributions.sum(axis=1).to_numpy()
        scores = 1.0 / (1.0 + np.exp2(-np.clip(total, -60, 60)))
        return Scored(scores=scores, weights=contributions)

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "prior": self.prior,
            "weights": {name: list(pair) for name, pair in sorted(self.weights.items())},
        }


def model_from_json(raw: dict[str, Any]) -> Model:
    return Model(
        kind=raw["kind"],
        prior=float(raw["prior"]),
        weights={name: (float(a), float(d)) for name, (a, d) in raw["weights"].items()},
    )


ECM_FIT_MAX_PAIRS = 200_000


def informative(features: pd.DataFrame) -> list[str]:
    """Features with both outcomes present among the pairs (ECM cannot fit the others)."""
    out = []
    for name in FEATURE_NAMES:
        values = features[name].dropna()
        if values.nunique() == 2:
            out.append(name)
    return out


def ecm_fit(
    features: pd.DataFrame, *, max_iter: int = 100, max_pairs: int = ECM_FIT_MAX_PAIRS
) -> Model:
    """Fellegi-Sunter m / u probabilities by ECM over the pairs (missing counted as disagreement
    for fitting only: its weight when scoring is 0). Past ``max_pairs`` the fit runs on a fixed
    random sample of them: the probabilities of a dozen binary features are estimated as well
    from 200,000 pairs as from millions, and recordlinkage's ECM costs time and memory in
    proportion to the pairs it is given."""
    if len(features) > max_pairs:
        features = features.sample(n=max_pairs, random_state=0)
    names = informative(features)
    if not names or len(features) < 2:
        return Model(kind=ECM)
    data = features[names].fillna(0.0).astype(int)
    classifier = rl.ECMClassifier(binarize=None, max_iter=max_iter)
    classifier.fit(data)
    weights = {}
    for name in names:
        m = classifier.m_probs[name]
        u = classifier.u_probs[name]
        m1, u1 = _clip(m.get(1, m.get(1.0, EPSILON))), _clip(u.get(1, u.get(1.0, EPSILON)))
        weights[name] = (math.log2(m1 / u1), math.log2((1 - m1) / (1 - u1)))
    p = _clip(float(classifier.p))
    return Model(kind=ECM, weights=weights, prior=math.log2(p / (1 - p)))


def _clip(value: float) -> float:
    return min(max(float(value), EPSILON), 1 - EPSILON)


def design(features: pd.DataFrame) -> np.ndarray:
    """Two indicator columns per feature (agrees, disagrees); missing is neither."""
    columns = []
    for name in FEATURE_NAMES:
        values = features[name].to_numpy(dtype=float)
        columns.append((values == 1.0).astype(float))
        columns.append((values == 0.0).astype(float))
    return np.column_stack(columns)


def logistic_fit(features: pd.DataFrame, labels: np.ndarray) -> Model:
    regression = LogisticRegression(C=1.0, max_iter=1000)
    regression.fit(design(features), labels)
    coef = regression.coef_[0] / LN2
    weights = {
        name: (float(coef[2 * i]), float(coef[2 * i + 1])) for i, name in enumerate(FEATURE_NAMES)
    }
    return Model(kind=LOGISTIC, weights=weights, prior=float(regression.intercept_[0]) / LN2)


def logistic_evaluate(
    features: pd.DataFrame, labels: np.ndarray, *, threshold: float, folds: int = 5
) -> dict[str, float]:
    """Cross-validated precision, recall, F1 (at ``threshold``) and ROC AUC of the logistic
    model on the labelled pairs: what the stored evaluation of a model version says."""
    folds = max(2, min(folds, int(np.bincount(labels.astype(int)).min())))
    probabilities = cross_val_predict(
        LogisticRegression(C=1.0, max_iter=1000),
        design(features),
        labels,
        cv=StratifiedKFold(n_splits=folds, shuffle=True, random_state=0),
        method="predict_proba",
    )[:, 1]
    predicted = (probabilities >= threshold).astype(int)
    return {
        "folds": float(folds),
        "threshold": threshold,
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(labels, probabilities)),
    }


# Used until a pass has fitted a model (a fresh install, an incremental run before any full
# pass): m / u guesses in the usual Fellegi-Sunter ranges, so obvious duplicates score high and
# everything else goes to review rather than merging on no evidence.
_DEFAULT_MU = {
    "first_name": (0.9, 0.05),
    "last_name": (0.9, 0.05),
    "street": (0.8, 0.01),
    "city": (0.85, 0.05),
    "postcode": (0.85, 0.01),
    "birth_date": (0.9, 0.001),
    "birth_date_near": (0.08, 0.001),
    "email": (0.6, 0.0001),
    "email_local": (0.3, 0.001),
    "name_email": (0.5, 0.001),
    "phone": (0.6, 0.0001),
    "phone_suffix": (0.2, 0.001),
}
DEFAULT_PRIOR = math.log2(1e-4 / (1 - 1e-4))


def default_model() -> Model:
    return Model(
        kind=ECM,
        prior=DEFAULT_PRIOR,
        weights={
            name: (math.log2(m / u), math.log2((1 - m) / (1 - u)))
            for name, (m, u) in _DEFAULT_MU.items()
        },
    )
