"""Calibration of the synthetic sessions: what would regress if the generator saturated or blurred.

Cheap stand-ins for the benchmark (benchmarks/quality.py), on sessions simulated in memory:
the block prior is a weak signal against trial-to-trial variability; simple decoders of block,
choice, wheel and whisker stay well below ceiling; regions differ in tuning and time course
enough to be told apart from each unit's true tuning; and the rate cap hardly ever binds.
"""

from __future__ import annotations

import numpy as np
import pytest

from neds_ibl.synth import SynthSettings, simulate_session, truth_edges
from neds_ibl.synth_spikes import FAMILIES, RATE_CAP, _rates_and_gains, family_mean
from neds_ibl.synth_task import COVARIATES, DT

SETTINGS = SynthSettings(sessions=2, seed=0, trials=300, units=200, probes=2)  # every region of both tracks
BIN = 0.02


@pytest.fixture(scope="module")
def sessions():
    from iblatlas.regions import BrainRegions

    regions = BrainRegions()
    return [simulate_session(SETTINGS, i, regions) for i in range(SETTINGS.sessions)]


def counts_of(probe, edges: np.ndarray) -> np.ndarray:
    """(valid trials, bins, units) spike counts in the truth's bins."""
    ok = np.isfinite(edges[:, 0])
    e = edges[ok]
    times, units = probe.spikes["times"], probe.spikes["clusters"]
    trial = np.searchsorted(e[:, 0], times, side="right") - 1
    inside = (trial >= 0) & (times < e[np.maximum(trial, 0), -1])
    trial, times, units = trial[inside], times[inside], units[inside]
    b = np.minimum(np.floor((times - e[trial, 0]) / BIN).astype(int), e.shape[1] - 2)
    out = np.zeros((ok.sum(), e.shape[1] - 1, len(probe.units)), dtype=np.int32)
    np.add.at(out, (trial, b, units), 1)
    return out


def population(session):
    """(valid-trial mask, counts, truth, beryl, weights) over both probes, units above 5 Hz only (NEDS's filter)."""
    edges = truth_edges(session.task.trials["stimOn_times"])
    ok = np.isfinite(edges[:, 0])
    counts = np.concatenate([counts_of(p, edges) for p in session.probes], axis=2)
    truth = np.concatenate([p.truth[ok] for p in session.probes], axis=2)
    beryl = np.concatenate([p.units.beryl for p in session.probes])
    weights = np.concatenate([p.units.weights for p in session.probes])
    keep = truth.mean(axis=(0, 1)) / BIN > 5.0
    return ok, counts[:, :, keep], truth[:, :, keep], beryl[keep], weights[keep]


# ------------------------------------------------------------------------------------------------ block


def test_block_modulation_is_small_against_trial_to_trial_variability(sessions):
    """Before the stimulus, a unit's true rate in 0.2 vs 0.8 blocks differs by well under its trial-to-trial SD."""
    for session in sessions:
        ok, _, truth, _, _ = population(session)
        prior = session.task.trials["probabilityLeft"][ok]
        pre = truth[:, :25, :].mean(axis=1)  # the 500 ms before stimulus onset
        a, b = pre[prior == 0.2], pre[prior == 0.8]
        d = np.abs(a.mean(0) - b.mean(0)) / np.sqrt(0.5 * (a.var(0) + b.var(0)))
        assert 0.1 < np.median(d) < 0.6 and np.percentile(d, 90) < 1.25, (np.median(d), np.percentile(d, 90))
    assert max(abs(w[COVARIATES.index("block")]) for w, _ in FAMILIES.values()) <= 0.2


# --------------------------------------------------------------------------------------------- decoders


def _balanced_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    predicted = cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
    return balanced_accuracy_score(y, predicted)


def _bin_means(signal: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(trials, bins) mean of a grid signal over each bin (grid steps by their start time)."""
    steps = np.floor(edges[:, :-1, None] / DT).astype(int) + np.arange(int(round(BIN / DT)))[None, None, :]
    return signal[np.minimum(steps, signal.size - 1)].mean(axis=2)


def _ridge_r2(x: np.ndarray, y: np.ndarray, train: np.ndarray) -> float:
    """Ridge from the population vector of a bin to the behaviour in that bin, R² on held-out trials."""
    from sklearn.linear_model import RidgeCV

    k, t, n = x.shape
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    model = RidgeCV(alphas=np.logspace(-2, 4, 7)).fit(flat(x[train]), y[train].ravel())
    test = ~train
    residual = y[test].ravel() - model.predict(flat(x[test]))
    return 1.0 - residual.var() / y[test].ravel().var()


def test_simple_decoders_stay_well_below_ceiling(sessions):
    """Logistic regression on counts in five 400 ms windows (a better decoder than the benchmark's
    ridge_decoder here) and per-bin ridge for wheel and whisker: informative, never saturated."""
    block, choice, wheel, whisker = [], [], [], []
    for session in sessions:
        ok, counts, _, _, _ = population(session)
        trials = session.task.trials
        go = trials["choice"][ok] != 0
        x = counts[go].reshape(go.sum(), 5, 20, -1).sum(axis=2).reshape(go.sum(), -1).astype(float)
        block.append(_balanced_accuracy(x, trials["probabilityLeft"][ok][go].astype(str)))
        choice.append(_balanced_accuracy(x, trials["choice"][ok][go].astype(str)))
        edges = truth_edges(trials["stimOn_times"])[ok]
        train = np.random.default_rng(0).random(ok.sum()) < 0.7
        rates = np.sqrt(counts.astype(float))
        for name, out in (("wheel", wheel), ("whisker", whisker)):
            out.append(_ridge_r2(rates, _bin_means(session.task.covariates[COVARIATES.index(name)], edges), train))
    assert 0.45 < np.mean(block) < 0.82, block  # 3 classes: chance 1/3
    assert 0.65 < np.mean(choice) < 0.93, choice
    assert 0.2 < np.mean(wheel) < 0.85 and np.mean(whisker) < 0.85, (wheel, whisker)


def test_choice_is_carried_by_a_subset_of_regions():
    choice = {r: abs(family_mean(r)[COVARIATES.index("choice")]) for r in FAMILIES}
    assert {r for r, w in choice.items() if w >= 0.08} == {"VISa", "PO", "LP"}
    assert all(choice[r] == 0 for r in ("VISam", "LGd", "DG"))


# ---------------------------------------------------------------------------------------------- regions


def _tuning_features(session):
    """Per unit (all units, every region): |weights| and the trial-averaged true PSTH's shape (20 × 100 ms)."""
    ok = np.isfinite(session.task.trials["stimOn_times"])
    rows, names = [], []
    for p in session.probes:
        psth = p.truth[ok].mean(axis=0).T.reshape(len(p.units), 20, 5).mean(axis=2)
        rows.append(np.concatenate([np.abs(p.units.weights), psth / psth.mean(axis=1, keepdims=True)], axis=1))
        names.append(p.units.beryl)
    return np.concatenate(rows), np.concatenate(names)


def _cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=3000))
    return float(np.mean(cross_val_predict(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)) == y))


def test_a_units_region_is_predictable_from_its_true_tuning(sessions):
    parts = [_tuning_features(s) for s in sessions]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    names, counts = np.unique(y, return_counts=True)
    keep = np.isin(y, names[counts >= 10])
    x, y = x[keep], y[keep]
    chance = np.unique(y, return_counts=True)[1].max() / y.size  # the most common region's share
    n_weights = len(COVARIATES)
    assert _cv_accuracy(x, y) > max(0.8, 3 * chance)  # weights and time course together
    assert _cv_accuracy(x[:, n_weights:], y) > 2.5 * chance  # the time course alone (PSTH shape)


def test_regions_have_their_own_time_course(sessions):
    """Contralateral stimuli: visual regions peak 40–160 ms after onset; PO ramps into the movement,
    peaking later; hippocampus stays flatter than either."""
    session = sessions[0]
    ok, _, truth, beryl, _ = population(session)
    trials = session.task.trials
    contra = np.nan_to_num(trials["contrastRight"])[ok] >= 0.25

    def psth(regions):
        r = truth[contra][:, :, np.isin(beryl, regions)].mean(axis=0)
        return (r / r.mean(axis=0)).mean(axis=1)  # units weighted equally

    def peak_ms(p):
        return (int(np.argmax(p)) - 25) * 1000 * BIN

    visual, po, hippocampus = psth(["VISa", "VISam", "LGd"]), psth(["PO"]), psth(["CA1", "CA3", "DG"])
    assert 40 <= peak_ms(visual) <= 160 and 150 <= peak_ms(po) <= 600
    depth = lambda p: p.max() / p.min()  # noqa: E731
    assert depth(hippocampus) < min(depth(visual), depth(po)) and depth(hippocampus) < 1.6
    # PO's rate rises before movement onset (the premotor ramp), aligned on each trial's movement.
    rt = (trials["firstMovement_times"] - trials["stimOn_times"])[ok]
    fine = np.isfinite(rt) & (rt > 0.15) & (rt < 0.8)
    onset = np.floor((rt[fine] + 0.5) / BIN).astype(int)
    units = np.isin(beryl, ["PO"])
    by_trial = truth[fine][:, :, units]
    before = by_trial[np.arange(fine.sum())[:, None], onset[:, None] + np.arange(-5, 0)[None, :]].mean(axis=(0, 1))
    earlier = by_trial[:, :20].mean(axis=(0, 1))  # before the stimulus
    assert np.median(before / earlier) > 1.2


def test_sessions_share_region_structure_but_not_neurons_or_latents(sessions):
    a, b = sessions
    for region in ("VISa", "PO", "CA1"):
        mean = [np.median(np.abs(s.probes[0].units.weights[s.probes[0].units.beryl == region]), axis=0) for s in (a, b)]
        assert np.corrcoef(*mean)[0, 1] > 0.9, region
    latent = COVARIATES.index("latent_slow")
    assert not np.allclose(a.task.covariates[latent][:1000], b.task.covariates[latent][:1000])


def test_the_rate_cap_hardly_ever_binds(sessions):
    for session in sessions:
        for p in session.probes:
            uncapped = np.exp(p.units.weights @ session.task.covariates) * _rates_and_gains(p.units, session.task.covariates)[1][:, None]
            assert np.maximum(uncapped - RATE_CAP, 0.0).sum() / uncapped.sum() < 1e-3
