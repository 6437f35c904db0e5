"""The IBL data source, end to end through the real ONE (local mode) and brainbox, on generated sessions."""

from __future__ import annotations

import shutil

import attrs
import numpy as np
import pytest

from neds_framework.errors import NedsError, NedsRunError
from neds_ibl.one_connect import OneSettings
from neds_ibl.source import IblSettings, IblSource, split_trials
from neds_ibl.synth import SynthSettings, generate

SMALL = SynthSettings(sessions=2, seed=3, trials=120, units=50)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_cache")
    eids = generate(root, SMALL)
    return root, eids


@pytest.fixture(scope="module")
def two_probe_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_cache_2p")
    eids = generate(root, attrs.evolve(SMALL, sessions=1, probes=2, drop=("leftCamera",)))
    return root, eids


def source_for(root, **kw) -> IblSource:
    return IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(root)), **kw))


@pytest.fixture(scope="module")
def prepared(cache):
    root, eids = cache
    src = source_for(root)
    return src, src.prepare(eids[0])


def slow_counts(spike_times, spike_clusters, starts, n_bins, bin_size, n_clusters):
    """Obviously correct: each spike, each trial, edges compared one by one."""
    out = np.zeros((len(starts), n_bins, n_clusters), dtype=np.int64)
    for k, t0 in enumerate(starts):
        edges = t0 + bin_size * np.arange(n_bins + 1)
        lo, hi = np.searchsorted(spike_times, [edges[0], edges[-1]], side="left")
        for t, c in zip(spike_times[lo:hi], spike_clusters[lo:hi]):
            b = np.searchsorted(edges, t, side="right") - 1
            if 0 <= b < n_bins:
                out[k, b, c] += 1
    return out


def test_spike_counts_equal_a_slow_reference(cache, prepared):
    root, eids = cache
    src, data = prepared
    spikes, neurons = src._load_spikes(eids[0])
    trials = src._load_trials(eids[0])
    starts = trials["stimOn_times"][data.trials["trial_index"]] - 0.5
    kept = np.array([np.flatnonzero(neurons["uuid"] == u)[0] for u in data.neurons["uuid"]])
    expected = slow_counts(spikes["times"], spikes["clusters"], starts, 100, 0.02, len(neurons["uuid"]))[:, :, kept]
    np.testing.assert_array_equal(data.modalities["spikes"], expected)
    assert data.modalities["spikes"].shape == (data.n_trials, 100, data.n_neurons)


def test_window_is_stimon_minus_half_to_plus_one_and_a_half(prepared):
    src, data = prepared
    assert src.settings.n_bins == 100
    assert data.meta["bin_size"] == 0.02 and data.meta["window_start"] == -0.5 and data.meta["align_event"] == "stimOn_times"


def test_trial_filter_and_report(cache, prepared):
    root, eids = cache
    src, data = prepared
    trials = src._load_trials(eids[0])
    rt = trials["firstMovement_times"] - trials["stimOn_times"]
    idx = data.trials["trial_index"]
    assert np.all((rt[idx] >= 0) & (rt[idx] <= 10))
    assert np.all(trials["choice"][idx] != 0)
    assert np.all(np.isfinite(trials["feedback_times"][idx]))
    report = data.report
    assert report["trials_total"] == len(trials["stimOn_times"])
    assert report["trials_kept"] == data.n_trials < report["trials_total"]
    assert sum(report["trials_excluded"].values()) >= report["trials_total"] - report["trials_kept"]


def test_rate_threshold(cache, prepared):
    root, eids = cache
    src, data = prepared
    spikes, neurons = src._load_spikes(eids[0])
    trials = src._load_trials(eids[0])
    starts = trials["stimOn_times"][np.isfinite(trials["stimOn_times"])] - 0.5
    counts = slow_counts(spikes["times"], spikes["clusters"], starts, 100, 0.02, len(neurons["uuid"]))
    rates = counts.sum(axis=1).mean(axis=0) / 2.0
    np.testing.assert_array_equal(np.sort(neurons["uuid"][rates > 5.0]), np.sort(data.neurons["uuid"]))
    assert 0 < data.n_neurons < len(neurons["uuid"])  # the generator makes some slow units
    stricter = source_for(root, rate_threshold_hz=10.0).prepare(eids[0])
    assert stricter.n_neurons < data.n_neurons


def test_left_camera_is_read_when_present(cache, prepared):
    root, eids = cache
    src, data = prepared
    from neds_ibl import behaviour

    loader = src._session_loader(eids[0])
    loader.load_motion_energy(views=["left"])
    frame = loader.motion_energy["leftCamera"]
    starts = src._load_trials(eids[0])["stimOn_times"][data.trials["trial_index"]] - 0.5
    left, good = behaviour.interpolate_to_bins(frame["times"].to_numpy(), frame["whiskerMotionEnergy"].to_numpy(), starts, 100, 0.02)
    scaled, _ = behaviour.minmax_scale(left, data.splits["train"])
    np.testing.assert_allclose(data.modalities["whisker"], scaled, rtol=1e-5)


def test_right_camera_fallback_and_two_probe_merge(two_probe_cache):
    root, eids = two_probe_cache
    data = source_for(root).prepare(eids[0])
    assert "whisker" in data.modalities  # from the right camera
    assert "leftCamera" not in str(data.report["absent"])
    assert set(data.neurons["probe"]) == {"probe00", "probe01"}
    assert len(np.unique(data.neurons["cluster_id"])) == data.n_neurons
    assert len(np.unique(data.neurons["uuid"])) == data.n_neurons
    assert data.meta["probes"] == "probe00,probe01"
    assert len(set(data.neurons["region"])) >= 3


def test_splits_depend_on_the_eid_only(cache, prepared):
    root, eids = cache
    src, data = prepared
    s = data.splits
    assert sorted(np.concatenate([s["train"], s["val"], s["test"]]).tolist()) == list(range(data.n_trials))
    assert abs(len(s["train"]) - 0.7 * data.n_trials) <= 1 and abs(len(s["test"]) - 0.2 * data.n_trials) <= 1
    # Preparing another session first (or alone) does not change this one's split.
    other = source_for(root)
    other.prepare(eids[1])
    again = other.prepare(eids[0])
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(again.splits[name], s[name])
    assert not np.array_equal(split_trials(eids[1], 100, (0.7, 0.1, 0.2))["test"], split_trials(eids[0], 100, (0.7, 0.1, 0.2))["test"])


def test_dynamic_behaviour_scaled_with_train_statistics(prepared):
    src, data = prepared
    train = data.splits["train"]
    for name in ("wheel", "whisker"):
        values = data.modalities[name]
        assert np.nanmin(values[train]) == pytest.approx(0.0, abs=1e-6)
        assert np.nanmax(values[train]) == pytest.approx(1.0, abs=1e-6)
        lo, hi = data.scaling[name]["min"], data.scaling[name]["max"]
        assert hi > lo


def test_static_classes(prepared):
    src, data = prepared
    assert set(np.unique(data.modalities["choice"])) <= {0, 1}
    assert set(np.unique(data.modalities["block"])) <= {0, 1, 2}
    pl = data.trials["probabilityLeft"]
    np.testing.assert_array_equal(data.modalities["block"], np.select([pl == 0.2, pl == 0.5, pl == 0.8], [0, 1, 2]))


def test_truth_rates_follow_the_kept_trials_and_neurons(prepared):
    src, data = prepared
    rates = data.truth["rates"]
    assert rates.shape == data.modalities["spikes"].shape
    # Expected counts summed over trials and bins must match observed counts per neuron (Poisson).
    observed = data.modalities["spikes"].sum(axis=(0, 1)).astype(float)
    expected = rates.sum(axis=(0, 1)).astype(float)
    z = (observed - expected) / np.sqrt(expected)
    assert np.abs(z).max() < 6


def test_missing_modality_keeps_the_others(tmp_path):
    eids = generate(tmp_path, attrs.evolve(SMALL, sessions=1, drop=("leftCamera", "rightCamera", "wheel")))
    data = source_for(tmp_path).prepare(eids[0])
    assert "whisker" not in data.modalities and "wheel" not in data.modalities
    assert {"spikes", "choice", "block"} <= set(data.modalities)
    assert set(data.report["absent"]) == {"whisker", "wheel"}


def test_unknown_eid_is_one_clear_error(cache):
    root, _ = cache
    with pytest.raises(NedsError, match="not in the ONE cache.*mode=remote"):
        source_for(root).prepare("00000000-0000-4000-8000-000000000000")


def test_missing_cache_is_one_clear_error(tmp_path):
    with pytest.raises(NedsError, match="no ONE cache tables"):
        source_for(tmp_path / "nothing").eids()


def test_no_neuron_above_threshold(cache):
    root, eids = cache
    with pytest.raises(NedsRunError, match="no neuron fires above"):
        source_for(root, rate_threshold_hz=1e6).prepare(eids[0])


def test_unknown_region_ids(cache, tmp_path):
    root, eids = cache
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    channel_files = sorted(copy.rglob("channels.brainLocationIds_ccf_2017.npy"))
    ids = np.load(channel_files[0])
    ids[:3] = 987654321
    np.save(channel_files[0], ids)
    src = source_for(copy)
    with pytest.raises(NedsRunError, match="unknown brain-region ids"):
        for eid in eids:
            src.prepare(eid)


def test_all_sessions_of_a_local_cache(cache):
    root, eids = cache
    assert source_for(root).eids() == sorted(eids)
    assert source_for(root, max_sessions=1).eids() == sorted(eids)[:1]


def test_lfp_band_power_from_every_probe(tmp_path):
    from neds_ibl.source import LfpSettings

    eids = generate(tmp_path, attrs.evolve(SMALL, sessions=1, trials=60, units=20, probes=2, lfp=True))
    data = source_for(tmp_path, lfp=LfpSettings(enabled=True)).prepare(eids[0])
    lfp = data.modalities["lfp"]
    assert lfp.shape == (data.n_trials, 100, 2 * 4)  # 4 bands for each of the two probes
    assert np.isfinite(lfp).all()
    assert "lfp" not in source_for(tmp_path).prepare(eids[0]).modalities  # off by default, as in NEDS
