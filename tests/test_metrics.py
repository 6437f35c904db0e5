"""The NEDS metrics: hand-computed values, slow loop/sklearn references, edge cases, the plugin."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, balanced_accuracy_score, r2_score

from neds_framework.errors import NedsError
from neds_framework.registry import Provider, Registries
from neds_metrics import functions as F
from neds_metrics import plugin

LN2 = math.log(2)


# ---------------------------------------------------------------------------------------------
# slow references: explicit loops, written from the formulas, independent of the vectorised code
# ---------------------------------------------------------------------------------------------
def loop_bits_per_spike(rates, counts):
    """NLB/NEDS bps per neuron: NLL with lgamma, zero rates → 1e-9, NaN counts skipped."""
    K, T, N = counts.shape
    out = []
    for n in range(N):
        cells = [(rates[k, t, n], counts[k, t, n]) for k in range(K) for t in range(T)]
        cells = [(lam, y) for lam, y in cells if not math.isnan(y)]
        total = sum(y for _, y in cells)
        null = total / len(cells) if cells else float("nan")

        def nll(rate_of):
            s = 0.0
            for lam, y in cells:
                lam = rate_of(lam)
                lam = 1e-9 if lam == 0 else lam
                s += lam - y * math.log(lam) + math.lgamma(y + 1)
            return s

        if total == 0:
            out.append(float("nan"))
            continue
        bps = (nll(lambda _: null) - nll(lambda lam: lam)) / (total * LN2)
        out.append(bps if math.isfinite(bps) else float("nan"))
    return np.array(out)


def loop_pseudo_r2(rates, counts):
    K, T, N = counts.shape
    out = []
    for n in range(N):
        ys = [counts[k, t, n] for k in range(K) for t in range(T)]
        lams = [rates[k, t, n] for k in range(K) for t in range(T)]
        null = sum(ys) / len(ys)

        def deviance(mus):
            d = 0.0
            for y, mu in zip(ys, mus):
                mu = 1e-9 if mu == 0 else mu
                d += (y * math.log(y / mu) if y > 0 else 0.0) - (y - mu)
            return 2 * d

        d_null = deviance([null] * len(ys))
        out.append(float("nan") if max(ys) == min(ys) else 1 - deviance(lams) / d_null)
    return np.array(out)


def loop_psth(values, conditions):
    """{condition row: mean over its trials} with a Python loop over conditions."""
    rows = [tuple(np.atleast_1d(c)) for c in conditions]
    return {c: np.mean([values[k] for k, r in enumerate(rows) if r == c], axis=0) for c in sorted(set(rows))}


def sklearn_psth_r2(pred, target, conditions):
    psth_t, psth_p = loop_psth(target, conditions), loop_psth(pred, conditions)
    t = np.concatenate([psth_t[c].reshape(-1) for c in psth_t])
    p = np.concatenate([psth_p[c].reshape(-1) for c in psth_t])
    return r2_score(t, p)


def random_spikes(seed, K=6, T=5, N=4):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.uniform(0.2, 3.0, N), size=(K, T, N)).astype(float)
    rates = rng.uniform(0.1, 4.0, size=(K, T, N))
    return rates, counts


# ---------------------------------------------------------------------------------------------
# bits per spike
# ---------------------------------------------------------------------------------------------
def test_bits_per_spike_by_hand():
    # 2 trials × 2 bins × 1 neuron; counts y, Σy = 4, null rate λ̄ = 4/4 = 1.
    counts = np.array([[1.0, 0.0], [2.0, 1.0]])[..., None]
    rates = np.array([[1.0, 0.5], [2.0, 1.0]])[..., None]
    lg = math.lgamma
    # NLL(λ) = Σ [λ − y ln λ + ln Γ(y+1)], cell by cell
    nll_model = (1 - 1 * math.log(1) + lg(2)) + (0.5 - 0 + lg(1)) + (2 - 2 * math.log(2) + lg(3)) + (1 - 0 + lg(2))
    nll_null = (1 + lg(2)) + (1 + lg(1)) + (1 - 2 * math.log(1) + lg(3)) + (1 + lg(2))
    assert nll_model == pytest.approx(4.5 - LN2) and nll_null == pytest.approx(4 + LN2)
    expected = (nll_null - nll_model) / (4 * LN2)  # = (2 ln 2 − 0.5) / (4 ln 2)
    assert F.bits_per_spike(rates, counts) == pytest.approx([expected], rel=1e-12)
    assert F.mean_bits_per_spike(rates, counts) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_bits_per_spike_matches_loop_reference(seed):
    rates, counts = random_spikes(seed)
    np.testing.assert_allclose(F.bits_per_spike(rates, counts), loop_bits_per_spike(rates, counts), rtol=1e-10)


def test_predicting_the_mean_scores_exactly_zero():
    rates, counts = random_spikes(7)
    mean = np.broadcast_to(counts.mean(axis=(0, 1)), counts.shape)
    assert np.array_equal(F.bits_per_spike(mean, counts), np.zeros(counts.shape[-1]))
    np.testing.assert_allclose(F.poisson_pseudo_r2(mean, counts), 0.0, atol=1e-12)


def test_silent_neuron_is_nan_and_mean_ignores_it():
    rates, counts = random_spikes(3, N=3)
    counts[:, :, 1] = 0
    bps = F.bits_per_spike(rates, counts)
    assert np.isnan(bps[1]) and np.isfinite(bps[[0, 2]]).all()
    assert F.mean_bits_per_spike(rates, counts) == pytest.approx(np.mean(bps[[0, 2]]))
    # The reference's 0 → 1e-9 replacement: a silent neuron predicted silent is 0/0, also NaN.
    assert np.isnan(F.bits_per_spike(np.zeros_like(rates), counts)[1])


def test_all_silent_mean_is_nan_without_warning():
    counts = np.zeros((2, 3, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(F.mean_bits_per_spike(np.ones_like(counts), counts))


def test_zero_rate_under_a_spike_is_a_finite_penalty_like_the_reference():
    rates, counts = random_spikes(11)
    counts[0, 0, 0], rates[0, 0, 0] = 2.0, 0.0
    bps = F.bits_per_spike(rates, counts)
    assert np.isfinite(bps[0])
    np.testing.assert_allclose(bps, loop_bits_per_spike(rates, counts), rtol=1e-10)


def test_nan_counts_are_excluded_pairwise():
    rates, counts = random_spikes(5)
    counts[1, 2, 0] = np.nan
    counts[3, :, 2] = np.nan
    rates_with_junk = rates.copy()
    rates_with_junk[1, 2, 0] = np.nan  # a prediction at a missing target is never read
    np.testing.assert_allclose(
        F.bits_per_spike(rates_with_junk, counts), loop_bits_per_spike(rates, counts), rtol=1e-10
    )


def test_bad_rates_raise():
    rates, counts = random_spikes(0)
    with pytest.raises(ValueError, match="NaN"):
        F.bits_per_spike(np.where(rates > 3.9, np.nan, rates), counts)
    with pytest.raises(ValueError, match=">= 0"):
        F.bits_per_spike(np.log(rates), counts)
    with pytest.raises(ValueError, match="shape"):
        F.bits_per_spike(rates[:, :-1], counts)
    with pytest.raises(ValueError, match="K trials"):
        F.bits_per_spike(rates[0], counts[0])


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), perm_seed=st.integers(0, 2**32 - 1))
def test_bits_per_spike_invariant_to_trial_and_bin_order(seed, perm_seed):
    rates, counts = random_spikes(seed)
    rng = np.random.default_rng(perm_seed)
    k, t = rng.permutation(counts.shape[0]), rng.permutation(counts.shape[1])
    np.testing.assert_allclose(
        F.bits_per_spike(rates[k][:, t], counts[k][:, t]), F.bits_per_spike(rates, counts), rtol=1e-9, atol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# Poisson pseudo-R²
# ---------------------------------------------------------------------------------------------
def test_poisson_pseudo_r2_by_hand():
    counts = np.array([[1.0, 0.0], [2.0, 1.0]])[..., None]
    rates = np.array([[1.0, 0.5], [2.0, 1.0]])[..., None]
    # D(λ,y) = 2 Σ [y ln(y/λ) − (y − λ)]: model cells 0, 0.5, 0, 0 → D = 1;
    # null λ̄ = 1: cells 0, 1, 2 ln 2 − 1, 0 → D = 4 ln 2.
    d_model, d_null = 2 * 0.5, 2 * (1 + 2 * LN2 - 1)
    assert F.poisson_pseudo_r2(rates, counts) == pytest.approx([1 - d_model / d_null], rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_poisson_pseudo_r2_matches_loop_reference(seed):
    rates, counts = random_spikes(seed)
    np.testing.assert_allclose(F.poisson_pseudo_r2(rates, counts), loop_pseudo_r2(rates, counts), rtol=1e-10)


def test_poisson_pseudo_r2_edges():
    rates, counts = random_spikes(2, N=3)
    counts[:, :, 1] = 0  # silent
    counts[:, :, 2] = 3  # constant
    r2 = F.poisson_pseudo_r2(rates, counts)
    assert np.isnan(r2[1:]).all() and np.isfinite(r2[0])
    counts = counts[..., :1]
    assert F.poisson_pseudo_r2(counts, counts)[0] == pytest.approx(1.0, abs=1e-8)  # zeros → 1e-9


# ---------------------------------------------------------------------------------------------
# R²
# ---------------------------------------------------------------------------------------------
def test_r2_pooled_by_hand():
    # y = 1, 2, 3, 4; ŷ = 1, 2, 3, 5 → SS_res = 1; ȳ = 2.5, SS_tot = 2.25 + 0.25 + 0.25 + 2.25 = 5
    assert F.r2_pooled([[1.0, 2.0], [3.0, 5.0]], [[1.0, 2.0], [3.0, 4.0]]) == pytest.approx(1 - 1 / 5)


@pytest.mark.parametrize("seed", range(3))
def test_r2_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(7, 5, 3))
    pred = target + rng.normal(scale=0.8, size=target.shape)
    assert F.r2_pooled(pred[..., 0], target[..., 0]) == pytest.approx(r2_score(target[..., 0].ravel(), pred[..., 0].ravel()))
    expected = [r2_score(target[..., n].ravel(), pred[..., n].ravel()) for n in range(3)]
    np.testing.assert_allclose(F.single_trial_r2_per_neuron(pred, target), expected, rtol=1e-12)


def test_r2_perfect_and_constant_target_follow_sklearn_force_finite():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert F.r2_pooled(y, y) == 1.0
    constant = np.full((2, 3), 2.0)
    assert F.r2_pooled(constant, constant) == 1.0 == r2_score(constant.ravel(), constant.ravel())
    assert F.r2_pooled(constant + 0.5, constant) == 0.0 == r2_score(constant.ravel(), (constant + 0.5).ravel())
    # sklearn's float mean of 0.1, 0.1, 0.1 leaves a ~1e-34 variance and scores ~-5e29; the
    # exact constancy test keeps force_finite's intent: 0.0.
    assert F.r2_pooled(np.full(3, 0.11), np.full(3, 0.1)) == 0.0
    # per neuron: neuron 0 as in the hand example (0.8), neuron 1 constant and missed (0.0)
    target = np.stack([y, np.full((2, 2), 7.0)], axis=-1)
    pred = np.stack([[[1.0, 2.0], [3.0, 5.0]], np.full((2, 2), 6.0)], axis=-1)
    np.testing.assert_allclose(F.single_trial_r2_per_neuron(pred, target), [0.8, 0.0])


def test_r2_nan_targets_excluded_pairwise_and_nan_predictions_raise():
    rng = np.random.default_rng(4)
    target, pred = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    target[1, 2] = target[4, 0] = np.nan
    keep = ~np.isnan(target)
    assert F.r2_pooled(pred, target) == pytest.approx(r2_score(target[keep], pred[keep]))
    pred[1, 2] = np.nan  # at a missing target: ignored
    assert F.r2_pooled(pred, target) == pytest.approx(r2_score(target[keep], pred[keep]))
    pred[0, 0] = np.nan  # at an observed target: a bug upstream
    with pytest.raises(ValueError, match="NaN or inf"):
        F.r2_pooled(pred, target)
    pred[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        F.psth_r2(pred, target, [0, 1, 0, 1, 0])


def test_r2_fewer_than_two_samples_is_nan():
    assert np.isnan(F.r2_pooled([1.0], [2.0]))
    assert np.isnan(F.r2_pooled([1.0, 2.0], [2.0, np.nan]))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.0, 10.0))
def test_r2_never_exceeds_one(seed, scale):
    rng = np.random.default_rng(seed)
    target = rng.normal(size=(4, 6))
    assert F.r2_pooled(target + scale * rng.normal(size=target.shape), target) <= 1.0


# ---------------------------------------------------------------------------------------------
# PSTH R²
# ---------------------------------------------------------------------------------------------
def test_psth_r2_by_hand():
    # 4 trials × 2 bins, conditions 0, 0, 1, 1.
    target = np.array([[1.0, 3.0], [3.0, 5.0], [0.0, 0.0], [2.0, 2.0]])  # PSTHs: [2, 4], [1, 1]
    pred = np.array([[2.0, 4.0], [2.0, 4.0], [1.0, 2.0], [1.0, 2.0]])  # PSTHs: [2, 4], [1, 2]
    # pooled over 2 conditions × 2 bins: SS_res = 1; mean 2, SS_tot = 0 + 4 + 1 + 1 = 6
    assert F.psth_r2(pred, target, [0, 0, 1, 1]) == pytest.approx(5 / 6)
    # (K, c) condition rows (block, choice) group the same way
    rows = np.array([[0.2, 1], [0.2, 1], [0.8, -1], [0.8, -1]])
    assert F.psth_r2(pred, target, rows) == pytest.approx(5 / 6)
    per_neuron = F.psth_r2_per_neuron(np.stack([pred, target], -1), np.stack([target, target], -1), [0, 0, 1, 1])
    np.testing.assert_allclose(per_neuron, [5 / 6, 1.0])


@pytest.mark.parametrize("seed", range(3))
def test_psth_r2_matches_loop_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    K, T, N = 12, 5, 3
    conditions = np.stack([rng.choice([0.2, 0.5, 0.8], K), rng.choice([-1, 1], K), rng.choice([0, 1], K)], axis=1)
    target = rng.normal(size=(K, T, N))
    pred = target + rng.normal(size=target.shape)
    assert F.psth_r2(pred[..., 0], target[..., 0], conditions) == pytest.approx(
        sklearn_psth_r2(pred[..., 0], target[..., 0], conditions)
    )
    expected = [sklearn_psth_r2(pred[..., n], target[..., n], conditions) for n in range(N)]
    np.testing.assert_allclose(F.psth_r2_per_neuron(pred, target, conditions), expected, rtol=1e-10)


def test_psth_r2_nan_trial_is_left_out_of_both_averages():
    rng = np.random.default_rng(9)
    target, pred = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    conditions = np.array([0, 1, 0, 1, 0, 1])
    target_nan = target.copy()
    target_nan[2] = np.nan
    keep = np.arange(6) != 2
    assert F.psth_r2(pred, target_nan, conditions) == pytest.approx(F.psth_r2(pred[keep], target[keep], conditions[keep]))


def test_psth_r2_rejects_bad_conditions():
    with pytest.raises(ValueError, match="conditions"):
        F.psth_r2(np.zeros((3, 2)), np.zeros((3, 2)), [0, 1])


# ---------------------------------------------------------------------------------------------
# Pearson r, accuracy, balanced accuracy
# ---------------------------------------------------------------------------------------------
def test_pearson_r_by_hand_and_against_scipy():
    # x = 1, 2, 3; y = 1, 3, 2: Σdx·dy = 1, Σdx² = Σdy² = 2 → r = 1/2
    assert F.pearson_r([1.0, 2.0, 3.0], [1.0, 3.0, 2.0]) == pytest.approx(0.5)
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    assert F.pearson_r(x, y) == pytest.approx(pearsonr(x.ravel(), y.ravel())[0])


def test_pearson_r_constant_or_tiny_is_nan():
    assert np.isnan(F.pearson_r([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    assert np.isnan(F.pearson_r([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]))
    assert np.isnan(F.pearson_r([1.0], [2.0]))


def test_accuracy_and_balanced_accuracy_by_hand():
    pred, true = [0, 1, 1, 1], [0, 1, 0, 0]
    assert F.accuracy(pred, true) == 0.5  # trials 0 and 1 right
    # recall: class 0 → 1 of 3, class 1 → 1 of 1; mean = (1/3 + 1) / 2
    assert F.balanced_accuracy(pred, true) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(4))
def test_accuracies_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.choice([0, 1, 2], size=30, p=[0.6, 0.3, 0.1])
    pred = np.where(rng.random(30) < 0.6, true, rng.choice([0, 1, 2], size=30))
    assert F.accuracy(pred, true) == pytest.approx(accuracy_score(true, pred))
    assert F.balanced_accuracy(pred, true) == pytest.approx(balanced_accuracy_score(true, pred))


def test_one_true_class_only():
    true, pred = np.ones(5, int), np.array([1, 1, 0, 1, 0])
    assert F.accuracy(pred, true) == pytest.approx(0.6) == accuracy_score(true, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns that y_pred has a class missing from y_true
        expected = balanced_accuracy_score(true, pred)
    assert F.balanced_accuracy(pred, true) == pytest.approx(0.6) == pytest.approx(expected)


def test_accuracy_nan_true_labels_are_dropped():
    true, pred = np.array([0.0, np.nan, 1.0, 1.0]), np.array([0, 1, 0, 1])
    assert F.accuracy(pred, true) == pytest.approx(2 / 3)
    assert F.balanced_accuracy(pred, true) == pytest.approx((1 + 0.5) / 2)
    assert np.isnan(F.accuracy([1], [np.nan])) and np.isnan(F.balanced_accuracy([1], [np.nan]))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_balanced_accuracy_is_a_proportion_and_matches_sklearn(pairs):
    pred, true = np.array(pairs).T
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(true, pred)
    assert 0.0 <= F.balanced_accuracy(pred, true) <= 1.0
    assert F.balanced_accuracy(pred, true) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# the plugin
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def metrics_registry():
    regs = Registries()
    plugin.neds_register_metrics(regs.register_function("metrics", Provider("neds_metrics")))
    return regs.metrics


def test_plugin_registers_every_metric_and_each_runs(metrics_registry):
    assert metrics_registry.names() == sorted(
        ["bits_per_spike", "poisson_pseudo_r2", "psth_r2", "psth_r2_spikes", "single_trial_r2", "r2",
         "pearson_r", "accuracy", "balanced_accuracy"]
    )
    rates, counts = random_spikes(0, K=8)
    rng = np.random.default_rng(0)
    beh_target, beh_pred = rng.normal(size=(8, 5)), rng.normal(size=(8, 5))
    labels_true, labels_pred = rng.integers(0, 3, 8), rng.integers(0, 3, 8)
    conditions = np.array([0, 1] * 4)
    inputs = {
        "counts": (rates, counts),
        "dynamic": (beh_pred, beh_target),
        "static": (labels_pred, labels_true),
    }
    for entry in metrics_registry:
        metric = entry.factory(None)
        assert metric.kind in inputs and entry.factory.__doc__
        result = metric(*inputs[metric.kind], conditions=conditions)
        assert result and all(isinstance(k, str) for k in result)
        for key, value in result.items():
            if key.endswith("_per_neuron"):
                assert np.shape(value) == (counts.shape[-1],)
            else:
                assert isinstance(value, float) and math.isfinite(value), (entry.name, key)


def test_plugin_values_are_the_functions(metrics_registry):
    rates, counts = random_spikes(1)
    out = metrics_registry.get("bits_per_spike").factory(None)(rates, counts)
    np.testing.assert_array_equal(out["bps_per_neuron"], F.bits_per_spike(rates, counts))
    assert out["bps"] == F.mean_bits_per_spike(rates, counts)


def test_rate_threshold_blanks_slow_neurons(metrics_registry):
    entry = metrics_registry.get("single_trial_r2")
    assert entry.settings is plugin.RateFilterSettings
    assert metrics_registry.get("psth_r2_spikes").settings is plugin.RateFilterSettings
    rates, counts = random_spikes(2, K=10, T=4, N=3)
    counts[:, :, 1] = 0
    counts[0, 0, 1] = 1  # mean 1/40 spikes per 20 ms bin = 1.25 Hz
    counts[:, :, 2] = 0
    counts[0, 0, 2] = counts[1, 0, 2] = 1  # 2/40 per bin = 2.5 Hz
    metric = entry.factory(entry.settings(min_rate_hz=2.0, bin_size=0.02))
    out = metric(rates, counts)
    assert np.isnan(out["single_trial_r2_per_neuron"][1])
    assert np.isfinite(out["single_trial_r2_per_neuron"][[0, 2]]).all()
    assert out["single_trial_r2"] == pytest.approx(np.mean(out["single_trial_r2_per_neuron"][[0, 2]]))
    unfiltered = entry.factory(None)(rates, counts)["single_trial_r2_per_neuron"]
    assert np.isfinite(unfiltered).all()
    with pytest.raises(ValueError, match="bin_size"):
        entry.settings(bin_size=0.0)


def test_psth_metrics_need_conditions(metrics_registry):
    rates, counts = random_spikes(0)
    with pytest.raises(NedsError, match="condition"):
        metrics_registry.get("psth_r2_spikes").factory(None)(rates, counts)
    with pytest.raises(NedsError, match="condition"):
        metrics_registry.get("psth_r2").factory(None)(rates[..., 0], counts[..., 0])
