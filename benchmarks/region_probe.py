"""The paper's emergent property: can a neuron's brain region be read from its learned weights?

Each neuron of a trained multi-session NEDS has its own readout row in the spikes head (hidden ->
log-rate), living in the transformer's shared space, so rows are comparable across sessions.
Two classifiers predict the neuron's Beryl region from its row and bias, each scored by stratified
cross-validation over the neurons of all sessions, against chance (the most common region's share):

    accuracy         a random forest. Preferences are mixed: within a region some neurons are
                     excited and some suppressed by the same variable (choice, block, the latents),
                     so a region is a set of rows with opposite signs, which no linear boundary
                     separates from another region's.
    accuracy_linear  a multinomial logistic regression (standardised features, penalty by
                     cross-validation), the linear read-out, for comparison.

Regions with fewer than ``min_neurons`` neurons are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def neuron_features(state: dict, eid: str) -> np.ndarray | None:
    weight = state.get(f"heads.spikes.layers.layers.{eid}.weight")
    bias = state.get(f"heads.spikes.layers.layers.{eid}.bias")
    if weight is None or bias is None:
        return None
    return np.concatenate([weight.numpy(), bias.numpy()[:, None]], axis=1)


def probe_accuracy(x: np.ndarray, y: np.ndarray, min_neurons: int = 5, folds: int = 5) -> dict:
    """Cross-validated accuracies of predicting labels `y` from features `x` (one row per neuron)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    names, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, names[counts >= min_neurons])
    x, y = x[keep], y[keep]
    names, counts = np.unique(y, return_counts=True)
    if len(names) < 2:
        return {"neurons": int(len(y)), "regions": int(len(names)), "accuracy": float("nan"),
                "accuracy_linear": float("nan"), "chance": float("nan")}
    k = int(min(folds, counts.min()))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=0)
    forest = RandomForestClassifier(n_estimators=500, random_state=0, n_jobs=1)
    linear = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=8, cv=k, max_iter=3000, use_legacy_attributes=False,
                                                                  l1_ratios=(0.0,), scoring="accuracy"))
    return {
        "neurons": int(len(y)),
        "regions": int(len(names)),
        "accuracy": float(np.mean(cross_val_predict(forest, x, y, cv=cv) == y)),
        "accuracy_linear": float(np.mean(cross_val_predict(linear, x, y, cv=cv) == y)),
        "chance": float(counts.max() / counts.sum()),
    }


def region_probe(run_dir: Path, store_path: Path, min_neurons: int = 5, folds: int = 5) -> dict:
    from neds_framework.data.store import SessionStore
    from neds_framework.engine.record import RunRecord

    state = RunRecord.load(run_dir).checkpoint("last")["model"]
    features, regions = [], []
    with SessionStore(store_path) as store:
        for eid in store.eids:
            f = neuron_features(state, eid)
            if f is not None:
                features.append(f)
                regions.append(np.asarray(store.neurons(eid)["region"]).astype(str))
    if not features:
        return {"neurons": 0, "regions": 0, "accuracy": float("nan"), "accuracy_linear": float("nan"), "chance": float("nan")}
    return probe_accuracy(np.concatenate(features), np.concatenate(regions), min_neurons, folds)
