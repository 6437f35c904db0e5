"""Evaluation metrics of NEDS as pure, vectorised numpy functions.

Shapes: spikes are (K trials, T bins, N neurons); dynamic behaviour is (K, T) (any trailing
shape works for the pooled metrics); static labels are (K,). Every function computes in float64
whatever the input dtype, so float32 model outputs lose no digits in the long sums.

Formulas follow the reference (NEDS `src/utils/eval_utils.py`, which copies NLB's
`bits_per_spike` and calls sklearn's `r2_score` / `accuracy_score` / `balanced_accuracy_score`
with default arguments). Conventions shared by all functions:

- Missing targets are NaN and are excluded pairwise: the prediction at that position is dropped
  too (the reference does this for spikes; for R² it would raise, so this is our extension).
- A NaN or infinite prediction at a scored position is a bug upstream (a diverged model) and
  raises ValueError, as the reference does (an assert in its NLL, sklearn's input check for R²).
- An undefined score is NaN, never a warning: silent neurons, fewer than two scored samples,
  constant inputs to a correlation.
"""

from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from neds_framework.api import nanmean_or_nan

#: The reference replaces rate predictions that are exactly 0 by this value before taking logs
#: (NLB's `neg_log_likelihood`), so a zero rate under an observed spike is a large finite
#: penalty, not -inf, and a silent neuron's null rate (mean 0) gives 0·ln(1e-9) = 0.
ZERO_RATE = 1e-9


# --------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------
def _as_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    return pred, target


def _valid_mask(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Where the target is observed; raises if the prediction is not finite at any such place."""
    valid = ~np.isnan(target)
    if not np.isfinite(pred[valid]).all():
        raise ValueError("prediction contains NaN or inf where the target is observed")
    return valid


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN where den is 0, without a RuntimeWarning."""
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _is_constant(target: np.ndarray, valid: np.ndarray, axis) -> np.ndarray:
    """Whether the observed target values are all equal, along `axis` (exactly, not via the mean).

    A variance computed around a float mean can leave ~1e-32 for a constant column, which would
    turn "constant target" into a huge negative R²; comparing max and min is exact.
    """
    hi = np.max(np.where(valid, target, -np.inf), axis=axis)
    lo = np.min(np.where(valid, target, np.inf), axis=axis)
    return hi <= lo  # also True for a column with no observed value


def _r2_columns(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """sklearn `r2_score` per column of (M, P) arrays, NaN targets excluded pairwise.

    R² = 1 − Σ(y−ŷ)² / Σ(y−ȳ)² over the observed rows of a column, with sklearn's defaults:
    force_finite (numerator 0 → 1.0; constant target with a non-zero numerator → 0.0) and NaN
    with fewer than two samples.
    """
    valid = _valid_mask(pred, target)
    count = valid.sum(axis=0)
    y = np.where(valid, target, 0.0)
    y_hat = np.where(valid, pred, 0.0)
    mean = _safe_divide(y.sum(axis=0), count)
    ss_res = ((y - y_hat) ** 2).sum(axis=0)
    ss_tot = (np.where(valid, target - mean, 0.0) ** 2).sum(axis=0)
    ss_tot = np.where(_is_constant(target, valid, axis=0), 0.0, ss_tot)
    r2 = 1.0 - _safe_divide(ss_res, ss_tot)
    r2 = np.where(ss_res == 0, 1.0, np.where(ss_tot == 0, 0.0, r2))
    return np.where(count < 2, np.nan, r2)


def _condition_inverse(conditions, n_trials: int) -> tuple[np.ndarray, int]:
    """Index of each trial's condition among the unique condition labels (or label rows)."""
    conditions = np.asarray(conditions)
    if conditions.shape[:1] != (n_trials,) or conditions.ndim > 2:
        raise ValueError(f"conditions must be (K,) or (K, c) with K={n_trials}, got shape {conditions.shape}")
    rows = conditions.reshape(n_trials, -1)
    unique, inverse = np.unique(rows, axis=0, return_inverse=True)
    return inverse.reshape(-1), len(unique)


def _condition_average(pred: np.ndarray, target: np.ndarray, conditions) -> tuple[np.ndarray, np.ndarray]:
    """Per-condition trial averages (PSTHs) of prediction and target: (C, ...) each.

    Trials with a NaN target at a position are left out of both averages at that position, so
    prediction and target are averaged over the same trials; a (condition, position) with no
    observed trial is NaN in both and drops out of the R².
    """
    pred, target = _as_pair(pred, target)
    valid = _valid_mask(pred, target)
    inverse, n_cond = _condition_inverse(conditions, target.shape[0])
    # A (C, K) membership matrix turns the per-condition sums into one BLAS product each.
    members = (inverse[None, :] == np.arange(n_cond)[:, None]).astype(np.float64)
    out_shape = (n_cond,) + target.shape[1:]

    def condition_sums(values):
        return (members @ values.reshape(len(inverse), -1)).reshape(out_shape)

    counts = condition_sums(valid.astype(np.float64))
    psth_pred = _safe_divide(condition_sums(np.where(valid, pred, 0.0)), counts)
    psth_target = _safe_divide(condition_sums(np.where(valid, target, 0.0)), counts)
    return psth_pred, psth_target


# --------------------------------------------------------------------------------------------
# spikes: Poisson likelihood metrics
# --------------------------------------------------------------------------------------------
def _poisson_inputs(rates, counts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Checked rates λ (zeros replaced by ZERO_RATE), counts y (NaN → 0), observed mask, null λ̄."""
    rates, counts = _as_pair(rates, counts)
    if counts.ndim != 3:
        raise ValueError(f"spike arrays must be (K trials, T bins, N neurons), got shape {counts.shape}")
    valid = _valid_mask(rates, counts)
    if (rates[valid] < 0).any():
        raise ValueError("rate predictions must be >= 0 (expected counts per bin, not log-rates)")
    # Unobserved positions get λ = 1, y = 0 so every term there is finite; they are masked out.
    lam = np.where(valid, rates, 1.0)
    lam = np.where(lam == 0, ZERO_RATE, lam)
    y = np.where(valid, counts, 0.0)
    null = _safe_divide(y.sum(axis=(0, 1)), valid.sum(axis=(0, 1)))  # per-neuron mean count, (N,)
    null = np.where(null == 0, ZERO_RATE, null)
    return lam, y, valid, null


def bits_per_spike(rates, counts) -> np.ndarray:
    """Bits per spike of each neuron, (N,): the reference's (NLB's) formula.

    rates: predicted expected count per bin λ > 0 (not log), counts: observed y, both (K, T, N).
    With NLL(λ, y) = Σ_{k,t} [λ − y ln λ + ln Γ(y+1)] and the null λ̄_n = mean of y_n over all
    k, t of this same data,

        bps_n = (NLL(λ̄_n) − NLL(λ_n)) / (Σ_{k,t} y_n · ln 2),

    non-finite → NaN. The ln Γ(y+1) terms are identical in both NLLs and cancel, so the
    difference is summed term by term, Σ [(λ̄ − λ) − y (ln λ̄ − ln λ)], which is the same
    number without the cancellation error of subtracting two large sums (and predicting λ̄
    scores exactly 0). Rates that are exactly 0 become 1e-9 first, as in the reference; so
    a silent neuron (Σy = 0) has a finite numerator over a zero denominator: NaN.
    """
    lam, y, valid, null = _poisson_inputs(rates, counts)
    gain = (null - lam) - y * (np.log(null) - np.log(lam))
    nll_difference = np.where(valid, gain, 0.0).sum(axis=(0, 1))
    bps = _safe_divide(nll_difference, y.sum(axis=(0, 1)) * np.log(2))
    return np.where(np.isfinite(bps), bps, np.nan)


def mean_bits_per_spike(rates, counts) -> float:
    """The reported bps: nanmean of `bits_per_spike` over neurons (NaN if every neuron is NaN)."""
    return nanmean_or_nan(bits_per_spike(rates, counts))


def poisson_pseudo_r2(rates, counts) -> np.ndarray:
    """Deviance-based Poisson pseudo-R² of each neuron, (N,).

    Deviance D(λ, y) = 2 Σ_{k,t} [y ln(y/λ) − (y − λ)] (y ln(y/λ) = 0 at y = 0), and

        pseudo_r2_n = 1 − D(λ_n, y_n) / D(λ̄_n, y_n)

    with λ̄_n the per-neuron mean count over all k, t. 1 for a perfect prediction (less ~1e-9
    per zero count, from the 1e-9 rate floor), 0 for predicting the mean, negative when worse than the mean. A constant neuron (including a
    silent one) has D(λ̄) = 0: NaN. Zero rates become 1e-9 as in `bits_per_spike`.
    """
    lam, y, valid, null = _poisson_inputs(rates, counts)

    def deviance(mu):
        terms = xlogy(y, y) - xlogy(y, mu) - (y - mu)
        return 2.0 * np.where(valid, terms, 0.0).sum(axis=(0, 1))

    # Exact constancy test: a float mean can leave a ~1e-16 null deviance for a constant neuron.
    d_null = np.where(_is_constant(y, valid, axis=(0, 1)), 0.0, deviance(null))
    return 1.0 - _safe_divide(deviance(lam), d_null)


# --------------------------------------------------------------------------------------------
# R² and correlation
# --------------------------------------------------------------------------------------------
def r2_pooled(pred, target) -> float:
    """R² over all elements pooled (sklearn `r2_score` of the flattened arrays).

    1 − Σ(y−ŷ)² / Σ(y−ȳ)² with ȳ over every observed element; the reference's wheel/whisker
    `r2_trial` (all test trials × bins concatenated). sklearn defaults: a constant target gives
    1.0 if predicted perfectly, else 0.0; fewer than two observed elements give NaN.
    """
    pred, target = _as_pair(pred, target)
    return float(_r2_columns(pred.reshape(-1, 1), target.reshape(-1, 1))[0])


def single_trial_r2_per_neuron(pred, target) -> np.ndarray:
    """Per-neuron R² over the flattened K×T single-trial values, (N,) (the reference's `r2_trial`)."""
    pred, target = _as_pair(pred, target)
    n_neurons = target.shape[-1]
    return _r2_columns(pred.reshape(-1, n_neurons), target.reshape(-1, n_neurons))


def psth_r2(pred, target, conditions) -> float:
    """R² of condition-averaged traces, pooled over conditions × time (the reference's `r2_psth`).

    pred, target: (K, T) (or (K, T, ...), pooled likewise); conditions: (K,) labels or (K, c)
    rows, one condition per unique row (NEDS uses (block, choice, reward)). Each condition's
    trace is the mean over its trials; R² as in `r2_pooled` over the (C, T) traces.
    """
    psth_pred, psth_target = _condition_average(pred, target, conditions)
    return r2_pooled(psth_pred, psth_target)


def psth_r2_per_neuron(pred, target, conditions) -> np.ndarray:
    """Per-neuron PSTH R² for (K, T, N) spikes, (N,): each neuron's (C, T) traces as in `psth_r2`."""
    psth_pred, psth_target = _condition_average(pred, target, conditions)
    n_neurons = psth_target.shape[-1]
    return _r2_columns(psth_pred.reshape(-1, n_neurons), psth_target.reshape(-1, n_neurons))


def pearson_r(pred, target) -> float:
    """Pearson correlation of all elements pooled; NaN if either side is constant or < 2 samples."""
    pred, target = _as_pair(pred, target)
    valid = _valid_mask(pred, target)
    x, y = pred[valid], target[valid]
    if x.size < 2 or x.max() == x.min() or y.max() == y.min():
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    return float(np.sum(dx * dy) / np.sqrt(np.sum(dx * dx) * np.sum(dy * dy)))


# --------------------------------------------------------------------------------------------
# classification
# --------------------------------------------------------------------------------------------
def _label_pair(pred_labels, true_labels) -> tuple[np.ndarray, np.ndarray]:
    """Labels as 1-d arrays, trials with a NaN true label dropped (float-coded labels only)."""
    pred = np.asarray(pred_labels).reshape(-1)
    true = np.asarray(true_labels).reshape(-1)
    if pred.shape != true.shape:
        raise ValueError(f"{pred.size} predicted labels for {true.size} true labels")
    if true.dtype.kind == "f":
        keep = ~np.isnan(true)
        pred, true = pred[keep], true[keep]
    return pred, true


def accuracy(pred_labels, true_labels) -> float:
    """Fraction of trials whose predicted label equals the true label (sklearn `accuracy_score`)."""
    pred, true = _label_pair(pred_labels, true_labels)
    return float(np.mean(pred == true)) if true.size else float("nan")


def balanced_accuracy(pred_labels, true_labels) -> float:
    """Mean recall over the classes present in the true labels (sklearn `balanced_accuracy_score`).

    Predicted classes absent from the true labels add no class of their own; they only count as
    misses of the true class. With one true class this equals plain accuracy.
    """
    pred, true = _label_pair(pred_labels, true_labels)
    if not true.size:
        return float("nan")
    classes, class_of_trial = np.unique(true, return_inverse=True)
    hits = np.bincount(class_of_trial.reshape(-1), weights=(pred == true), minlength=len(classes))
    support = np.bincount(class_of_trial.reshape(-1), minlength=len(classes))
    return float(np.mean(hits / support))
