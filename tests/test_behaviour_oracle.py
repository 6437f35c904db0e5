"""The behaviour-only oracle (truth.behaviourRates.npy): E[count | shown behaviour], loaded and scored.

It is checked three ways: against a Monte-Carlo average of the simulator's own rates over fresh
draws of everything a model does not see (the latents, and each trial's stimulus from its
posterior given choice and block); through ONE, the ibl source and the store into evaluation as
the task `oracle_behaviour`; and by its place between a trial-averaged PSTH and the full oracle.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest

from neds_framework.data.store import SessionStore
from neds_framework.data.store_write import StoreWriter
from neds_framework.engine.eval_tables import format_summary, summarise
from neds_framework.engine.evaluate import evaluate_session
from neds_framework.plugins import get_plugins
from neds_ibl.one_connect import OneSettings
from neds_ibl.source import IblSettings, IblSource
from neds_ibl.synth import SynthSettings, generate, simulate_session, truth_edges
from neds_ibl.synth_spikes import RATE_CAP, _cumulative, _integral_at, _rates_and_gains, capped_lognormal_mean
from neds_ibl.synth_task import (
    CONTRAST_P, CONTRASTS, COVARIATES, LATENT_COVARIATES, LATENT_TAUS, STIMULUS_COVARIATES, _choices, _smooth_noise,
)

MODALITIES = ["spikes", "wheel", "whisker", "choice", "block"]


def specs():
    from neds_modalities.plugin import MODALITIES as BUILTIN

    return {name: BUILTIN[name] for name in MODALITIES}


@pytest.fixture(scope="module")
def regions():
    from iblatlas.regions import BrainRegions

    return BrainRegions()


def test_behaviour_oracle_is_the_conditional_mean_of_the_true_rates(regions):
    """Monte Carlo over the hidden variables, behaviour held fixed, reproduces it (within MC error)."""
    session = simulate_session(SynthSettings(sessions=1, seed=5, trials=40, units=24), 0, regions)
    task, probe = session.task, session.probes[0]
    edges = truth_edges(task.trials["stimOn_times"])
    ok = np.isfinite(edges[:, 0])
    _, gains = _rates_and_gains(probe.units, task.covariates)
    hidden = task.stimulus
    rng = np.random.default_rng(0)
    support = hidden.step[:, None] + np.arange(hidden.kernels.shape[1])[None, :]
    prior, choice = task.trials["probabilityLeft"], task.trials["choice"]
    draws, samples, candidates = 150, [], 1000
    for _ in range(draws):
        x = task.covariates.copy()
        for name, tau in zip(LATENT_COVARIATES, LATENT_TAUS):  # fresh, independent latent trajectories
            x[COVARIATES.index(name)] = _smooth_noise(rng, task.n_steps, tau)
        # A stimulus per trial by rejection from the simulator's own sampler (not the Bayes code under
        # test): candidate sides and contrasts from the prior, kept where their sampled choice is the trial's.
        p = np.repeat(prior, candidates)
        left = rng.random(p.size) < p
        contrast = rng.choice(CONTRASTS, size=p.size, p=CONTRAST_P)
        accept = (_choices(rng, left, contrast, p) == np.repeat(choice, candidates)).reshape(-1, candidates)
        assert accept.any(axis=1).all()
        pick = np.arange(len(prior)) * candidates + accept.argmax(axis=1)
        value = np.where(left[pick], 0.0, np.sqrt(contrast[pick]))  # the contralateral (right) contrast
        for c, name in enumerate(STIMULUS_COVARIATES):
            row = np.zeros(task.n_steps, dtype=np.float32)
            row[support] = value[:, None] * hidden.kernels[c][None, :]
            x[COVARIATES.index(name)] = row
        rate = np.minimum(np.exp(probe.units.weights @ x) * gains[:, None], RATE_CAP).astype(np.float32)  # the simulator's rate
        at = _integral_at(_cumulative(rate), rate, edges[ok].ravel()).reshape(len(probe.units), ok.sum(), -1)
        samples.append(np.diff(at, axis=2).transpose(1, 2, 0).astype(np.float32))
    samples = np.stack(samples)  # (draws, trials, bins, units)
    oracle = probe.behaviour_truth[ok].astype(np.float64)

    def agrees(statistic) -> None:
        """The oracle's statistic within 4.5 Monte-Carlo standard errors (+0.5 %) of the draws' mean."""
        per_draw = np.stack([statistic(d) for d in samples])
        mean, se = per_draw.mean(axis=0), per_draw.std(axis=0, ddof=1) / np.sqrt(draws)
        got = statistic(oracle)
        assert np.all(np.abs(got - mean) <= 4.5 * se + 0.005 * np.abs(mean)), np.max(np.abs(got - mean) / se)

    # Each unit's mean count: the latent factor exp(½ Σ w²) and the stimulus mixture on average.
    agrees(lambda r: r.mean(axis=(0, 1)))
    # Trial by trial over the first 300 ms after stimulus onset, for stimulus-driven units: the
    # stimulus's posterior given each trial's choice and block.
    visual = np.flatnonzero(np.abs(probe.units.weights[:, 0]) > 0.5)
    assert visual.size >= 3
    agrees(lambda r: r[:, 25:40, visual].sum(axis=1))
    # Bin by bin, each unit's time course (its PSTH over trials).
    agrees(lambda r: r.mean(axis=0))


def test_the_capped_lognormal_mean_matches_sampling():
    """E[min(b e^{sZ}, cap)], the closed form the oracle uses where the rate cap could bind."""
    z = np.random.default_rng(1).standard_normal(2_000_000)
    for b, s, cap in ((50.0, 0.5, 400.0), (300.0, 0.7, 400.0), (600.0, 0.3, 400.0), (20.0, 0.0, 400.0)):
        sampled = np.minimum(b * np.exp(s * z), cap).mean()
        assert capped_lognormal_mean(np.array(b), np.array(s), cap) == pytest.approx(sampled, rel=2e-3)


def test_the_oracle_follows_the_rate_cap_where_it_binds(regions, monkeypatch):
    """With a cap low enough to bind often, the oracle's counts drop exactly where the capped rate says."""
    import neds_ibl.synth_spikes as spikes

    settings = SynthSettings(sessions=1, seed=5, trials=30, units=16)
    monkeypatch.setattr(spikes, "RATE_CAP", 15.0)
    low = simulate_session(settings, 0, regions).probes[0]
    monkeypatch.setattr(spikes, "RATE_CAP", 1e9)
    free = simulate_session(settings, 0, regions).probes[0]
    ok = ~np.isnan(low.truth[:, 0, 0])
    assert np.all(low.behaviour_truth[ok] <= free.behaviour_truth[ok] * (1 + 1e-4))  # float32 rounding
    assert np.all(low.behaviour_truth[ok] <= 15.0 * 0.02 * (1 + 1e-4))  # never above the cap's count in a bin
    capped = (low.truth[ok] < free.truth[ok] * 0.99).mean()  # where the true rate was cut
    assert capped > 0.05 and (low.behaviour_truth[ok] < free.behaviour_truth[ok] * 0.99).mean() > 0.05


def test_behaviour_oracle_is_written_with_the_truth_and_its_nan_rows(tmp_path, regions):
    settings = SynthSettings(sessions=1, seed=2, trials=40, units=12, probes=2)
    generate(tmp_path, settings)
    folder = next(tmp_path.rglob("neds_truth"))
    rates, shown = np.load(folder / "truth.rates.npy"), np.load(folder / "truth.behaviourRates.npy")
    assert shown.shape == rates.shape and shown.dtype == np.float32
    assert np.array_equal(np.isnan(shown), np.isnan(rates))
    session = simulate_session(settings, 0, regions)
    np.testing.assert_array_equal(shown, np.concatenate([p.behaviour_truth for p in session.probes], axis=2))
    ok = ~np.isnan(rates[:, 0, 0])
    # Marginalising keeps the mean: within a few % of the true rates' session mean (latent realisation).
    assert shown[ok].mean() == pytest.approx(rates[ok].mean(), rel=0.1)


# --------------------------------------------------------------------------- through ONE into evaluation


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("oracle_cache")
    eids = generate(root, SynthSettings(sessions=1, seed=4, trials=200, units=60))
    source = IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(root))))
    data = source.prepare(eids[0])
    path = root / "store.h5"
    with StoreWriter(path, {"test": 1}, framework_version="test") as writer:
        writer.add(data)
    return path, data


def all_metrics() -> dict:
    registries = get_plugins().registries
    out = {}
    for name in registries.metrics.names():
        entry = registries.metrics.get(name)
        out[name] = entry.factory(entry.settings() if entry.settings is not None else None)
    return out


def test_the_ibl_source_loads_it_and_the_store_keeps_it(store):
    path, data = store
    assert set(data.truth) == {"rates", "behaviour_rates"}
    assert data.truth["behaviour_rates"].shape == data.truth["rates"].shape == data.modalities["spikes"].shape
    with SessionStore(path) as s:
        eid = s.eids[0]
        assert set(s.info(eid).truth) == {"rates", "behaviour_rates"}
        trials = s.split(eid, "test")
        np.testing.assert_array_equal(s.read_truth(eid, "behaviour_rates", trials), data.truth["behaviour_rates"][trials])


def test_oracle_behaviour_is_scored_after_oracle_and_between_a_psth_and_the_oracle(store):
    path, _ = store
    with SessionStore(path) as s:
        eid = s.eids[0]
        train = s.read(eid, "spikes", s.split(eid, "train")).astype(np.float32)
        # The trial-averaged PSTH of the training trials, smoothed over 100 ms (5 bins).
        psth = np.apply_along_axis(lambda v: np.convolve(v, np.ones(5) / 5, mode="same"), 0, train.mean(axis=0))[None]
        psth = np.maximum(psth, 1e-3).astype(np.float32)

        import torch

        def psth_predictor(batch, masks):
            n = batch.values["spikes"].shape[0]
            return {"spikes": torch.from_numpy(np.repeat(psth, n, axis=0))}

        result = evaluate_session(psth_predictor, s, eid, specs(), all_metrics(), tasks=("encoding",), batch_size=10_000)
    bps = {task: result.tasks[task]["spikes"].scalars["bps"] for task in ("encoding", "oracle", "oracle_behaviour")}
    # Above the mean rate (0 bits per spike) and the PSTH, below the true rates.
    assert max(bps["encoding"], 0.0) < bps["oracle_behaviour"] < bps["oracle"], bps
    per_neuron = result.tasks["oracle_behaviour"]["spikes"].arrays["bps_per_neuron"]
    assert per_neuron.shape == result.tasks["oracle"]["spikes"].arrays["bps_per_neuron"].shape
    # A fitted baseline (the Poisson GLM on the shown behaviour) stays below it too.
    from neds_baselines.encoders import GlmEncoder

    glm = GlmEncoder()
    with SessionStore(path) as s:
        glm.fit(s, [eid], specs())
        fitted = evaluate_session(glm.predict, s, eid, specs(), all_metrics(), tasks=("encoding",), batch_size=10_000)
    assert fitted.tasks["encoding"]["spikes"].scalars["bps"] < bps["oracle_behaviour"]
    summary = summarise(result.rows())
    tasks = list(dict.fromkeys(row[0] for row in summary))
    assert tasks == ["encoding", "oracle", "oracle_behaviour"]
    assert "oracle_behaviour" in format_summary(summary)


def test_task_order_puts_each_oracle_after_its_task():
    from neds_framework.engine.eval_tables import _task_order

    names = ["decoding", "oracle_co_smoothing", "oracle_behaviour", "co_smoothing", "oracle", "decode_block", "encoding",
             "oracle_forward", "forward"]
    assert sorted(names, key=lambda t: (*_task_order(t), t)) == [
        "encoding", "oracle", "oracle_behaviour", "co_smoothing", "oracle_co_smoothing", "forward", "oracle_forward",
        "decoding", "decode_block"]


def test_old_sessions_without_the_behaviour_oracle_still_load(tmp_path):
    eids = generate(tmp_path, attrs.evolve(SynthSettings(sessions=1, seed=1, trials=30, units=12)))
    for f in tmp_path.rglob("truth.behaviourRates.npy"):
        f.unlink()
    from neds_ibl.one_cache import build_one_cache

    build_one_cache(tmp_path)
    data = IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(tmp_path)))).prepare(eids[0])
    assert set(data.truth) == {"rates"}
