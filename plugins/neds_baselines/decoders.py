"""`ridge_decoder`: the linear decoders of the NEDS paper's comparison (its dev-history baseline).

- Dynamic behaviour (wheel, whisker): for each time bin t, ridge regression from the population
  vector at t (spike counts of every neuron) to the behaviour at t, its penalty chosen among
  ``alphas`` by efficient leave-one-out cross-validation (scikit-learn's RidgeCV).
- Per-trial variables (choice, block): logistic regression on the whole trial's activity,
  flattened (neurons x bins), standardised, its penalty chosen by ``cv``-fold cross-validation
  among ``Cs`` values (LogisticRegressionCV); a class missing from the train split is never
  predicted, and a train split with one class predicts it.

Each session is fitted on its train split alone. The loop is over bins and sessions, never trials.
"""

from __future__ import annotations

import attrs
import numpy as np
import torch

from neds_framework.api import BatchKey, NedsError, StoreBatches
from neds_baselines.encoders import behaviour_specs, counts_modality


@attrs.frozen
class RidgeDecoderSettings:
    alphas: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4)  # the reference's range
    Cs: int = 10  # logistic: this many penalties, log-spaced (scikit-learn's default grid)
    cv: int = 5  # logistic: folds (fewer when a class has fewer train trials)
    max_iter: int = 2000


@attrs.frozen
class _SessionFit:
    coef: dict  # dynamic modality -> (T, N) weights
    intercept: dict  # dynamic modality -> (T,)
    classifiers: dict  # static modality -> fitted pipeline, or an int (the only class seen)


class RidgeDecoder:
    """Fit with ``fit(store, eids, specs)`` (modality -> ModalitySpec); ``predict(batch, masks)`` fills hidden behaviour."""

    Settings = RidgeDecoderSettings

    def __init__(self, settings: RidgeDecoderSettings | None = None):
        self.settings = settings or RidgeDecoderSettings()
        self.sessions: dict[str, _SessionFit] = {}
        self.source = ""

    def fit(self, store, eids, specs) -> None:
        self.source = counts_modality(specs, "ridge_decoder")
        reader = StoreBatches(store, {self.source: specs[self.source], **behaviour_specs(specs)})
        for eid in eids:
            trials = store.split(eid, "train")
            if len(trials) < 2:
                raise NedsError(f"ridge_decoder: session {eid} has {len(trials)} train trial(s); it needs at least 2")
            _, values = reader[_key(eid, trials)]
            self.sessions[eid] = self._fit_session(values)

    def _fit_session(self, values: dict) -> _SessionFit:
        from sklearn.linear_model import RidgeCV

        x = values[self.source].numpy().astype(np.float64)  # (K, T, N)
        coef, intercept, classifiers = {}, {}, {}
        for name, value in values.items():
            if name == self.source:
                continue
            y = value.numpy()
            if y.ndim == 2:
                w = np.zeros((x.shape[1], x.shape[2]))
                b = np.zeros(x.shape[1])
                for t in range(x.shape[1]):  # one small ridge per bin (100), each over all trials at once
                    model = RidgeCV(alphas=self.settings.alphas).fit(x[:, t, :], y[:, t])
                    w[t], b[t] = model.coef_, model.intercept_
                coef[name], intercept[name] = w, b
            elif y.ndim == 1:
                classifiers[name] = self._fit_classifier(x.reshape(len(x), -1), y.astype(np.int64))
        return _SessionFit(coef, intercept, classifiers)

    def _fit_classifier(self, x: np.ndarray, y: np.ndarray):
        from sklearn.linear_model import LogisticRegressionCV
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        classes, counts = np.unique(y, return_counts=True)
        if len(classes) == 1:
            return int(classes[0])
        folds = int(min(self.settings.cv, counts.min()))
        if folds < 2:  # a class with one train trial: no cross-validation possible
            from sklearn.linear_model import LogisticRegression

            return make_pipeline(StandardScaler(), LogisticRegression(max_iter=self.settings.max_iter)).fit(x, y)
        model = LogisticRegressionCV(Cs=self.settings.Cs, cv=folds, max_iter=self.settings.max_iter,
                                     use_legacy_attributes=False, l1_ratios=(0.0,), scoring="accuracy")
        return make_pipeline(StandardScaler(), model).fit(x, y)

    def predict(self, batch, masks) -> dict:
        fit = self.sessions.get(batch.session)
        if fit is None:
            raise NedsError(f"ridge_decoder was not fitted on session {batch.session}")
        x = batch.values[self.source].cpu().double()
        out = {}
        for name, w in fit.coef.items():
            if name in masks and bool(masks[name].any()):
                out[name] = torch.einsum("ktn,tn->kt", x, torch.from_numpy(w)) + torch.from_numpy(fit.intercept[name])
        for name, clf in fit.classifiers.items():
            if name in masks and bool(masks[name].any()):
                if isinstance(clf, int):
                    out[name] = torch.full((len(x),), clf, dtype=torch.long)
                else:
                    out[name] = torch.from_numpy(clf.predict(x.reshape(len(x), -1).numpy()).astype(np.int64))
        return out


def _key(eid: str, trials: np.ndarray):
    return BatchKey(eid, tuple(int(t) for t in trials))
