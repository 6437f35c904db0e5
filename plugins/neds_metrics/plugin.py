"""The NEDS evaluation metrics as registered metric entries.

Each entry is a class built as ``factory(settings_or_None)``. Its class attribute ``kind`` says
which modalities it scores: those whose `ModalitySpec.metric_kind` is the same ("counts":
prediction is the rate λ per bin, (K, T, N); "dynamic": (K, T) values; "static": (K,) predicted
class labels), and calling it as
``metric(prediction, target, conditions=...)`` returns named scalars plus, for spike metrics,
per-neuron arrays under keys ending in ``_per_neuron``. The formulas live in `functions`.
"""

from __future__ import annotations

from typing import ClassVar

import attrs
import numpy as np

from neds_framework.api import Metric, NedsError, hookimpl
from neds_metrics import functions as F


class _Metric(Metric):
    """Base of the metric entries: the engine constructs each as ``factory(settings_or_None)``."""

    kind: ClassVar[str]

    def __init__(self, settings=None):
        self.settings = settings


@attrs.frozen
class RateFilterSettings:
    """Which neurons a per-neuron R² scores: those firing at least ``min_rate_hz``."""

    # NEDS reports per-neuron R² for neurons >= 1 Hz; the default 0.0 scores every neuron.
    # Below the threshold a neuron's score is NaN. Rate = mean count per bin / bin_size (s).
    min_rate_hz: float = attrs.field(default=0.0, converter=float, validator=attrs.validators.ge(0.0))
    bin_size: float = attrs.field(default=0.02, converter=float, validator=attrs.validators.gt(0.0))


class _RateFilteredMetric(_Metric):
    """A per-neuron spike metric that blanks neurons below the settings' firing rate."""

    Settings = RateFilterSettings

    def __init__(self, settings: RateFilterSettings | None = None):
        super().__init__(settings if settings is not None else RateFilterSettings())

    def _keep_fast_neurons(self, per_neuron: np.ndarray, counts) -> np.ndarray:
        counts = np.asarray(counts, dtype=np.float64)
        observed = ~np.isnan(counts)
        n_observed = observed.sum(axis=(0, 1))
        mean_count = np.where(observed, counts, 0.0).sum(axis=(0, 1)) / np.maximum(n_observed, 1)
        # `>=` as in the reference (`mean_fr >= 1/fr_threshold`); a never-observed neuron is dropped.
        fast = (mean_count / self.settings.bin_size >= self.settings.min_rate_hz) & (n_observed > 0)
        return np.where(fast, per_neuron, np.nan)


def _need_conditions(name: str, conditions):
    if conditions is None:
        raise NedsError(
            f"metric '{name}' needs trial condition labels (e.g. block, choice, reward); "
            f"score it on data that has them or remove it from the recipe's metrics"
        )
    return conditions


class BitsPerSpike(_Metric):
    """Poisson bits per spike against the per-neuron mean rate (NEDS's encoding score)."""

    kind = "counts"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        per_neuron = F.bits_per_spike(prediction, target)
        return {"bps": F.nanmean_or_nan(per_neuron), "bps_per_neuron": per_neuron}


class PoissonPseudoR2(_Metric):
    """Deviance-based Poisson pseudo-R² per neuron, and its mean over neurons."""

    kind = "counts"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        per_neuron = F.poisson_pseudo_r2(prediction, target)
        return {"pseudo_r2": F.nanmean_or_nan(per_neuron), "pseudo_r2_per_neuron": per_neuron}


class PsthR2(_Metric):
    """R² of condition-averaged behaviour traces, pooled over conditions × time."""

    kind = "dynamic"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        return {"psth_r2": F.psth_r2(prediction, target, _need_conditions("psth_r2", conditions))}


class PsthR2Spikes(_RateFilteredMetric):
    """Per-neuron PSTH R² of spike rates (neurons above the rate threshold), and their mean."""

    kind = "counts"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        conditions = _need_conditions("psth_r2_spikes", conditions)
        per_neuron = self._keep_fast_neurons(F.psth_r2_per_neuron(prediction, target, conditions), target)
        return {"psth_r2": F.nanmean_or_nan(per_neuron), "psth_r2_per_neuron": per_neuron}


class SingleTrialR2(_RateFilteredMetric):
    """Per-neuron R² over all single-trial bins (neurons above the rate threshold), and their mean."""

    kind = "counts"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        per_neuron = self._keep_fast_neurons(F.single_trial_r2_per_neuron(prediction, target), target)
        return {"single_trial_r2": F.nanmean_or_nan(per_neuron), "single_trial_r2_per_neuron": per_neuron}


class PooledR2(_Metric):
    """R² over all trials × bins concatenated (NEDS's wheel/whisker decoding score)."""

    kind = "dynamic"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        return {"r2": F.r2_pooled(prediction, target)}


class PearsonR(_Metric):
    """Pearson correlation of all trials × bins pooled."""

    kind = "dynamic"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        return {"pearson_r": F.pearson_r(prediction, target)}


class Accuracy(_Metric):
    """Fraction of trials with the correct predicted class."""

    kind = "static"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        return {"accuracy": F.accuracy(prediction, target)}


class BalancedAccuracy(_Metric):
    """Mean per-class recall over the classes present in the targets."""

    kind = "static"

    def __call__(self, prediction, target, *, conditions=None) -> dict:
        return {"balanced_accuracy": F.balanced_accuracy(prediction, target)}


@hookimpl
def neds_register_metrics(register):
    register("bits_per_spike", BitsPerSpike)
    register("poisson_pseudo_r2", PoissonPseudoR2)
    register("psth_r2", PsthR2)
    register("psth_r2_spikes", PsthR2Spikes)
    register("single_trial_r2", SingleTrialR2)
    register("r2", PooledR2)
    register("pearson_r", PearsonR)
    register("accuracy", Accuracy)
    register("balanced_accuracy", BalancedAccuracy)
