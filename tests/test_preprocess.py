"""NEDS preprocessing functions (neds_ibl.binning, .behaviour, .lfp_features) against slow,
obviously correct references on small hand-made or random data."""

from __future__ import annotations

import bisect

import numpy as np
import pytest
import scipy.signal
from scipy.interpolate import interp1d

from neds_ibl import behaviour, binning, lfp_features

# ----------------------------------------------------------------------------- spike binning


def slow_bin(times, clusters, starts, n_bins, bin_size, n_clusters):
    """Each trial, each spike: the bin whose edges t0 + k·w ≤ t < t0 + (k+1)·w hold it."""
    out = np.zeros((len(starts), n_bins, n_clusters), dtype=np.int64)
    for trial, t0 in enumerate(starts.tolist()):
        edges = [t0 + k * bin_size for k in range(n_bins + 1)]
        for t, c in zip(times.tolist(), clusters.tolist()):
            k = bisect.bisect_right(edges, t) - 1
            if 0 <= k < n_bins:
                out[trial, k, c] += 1
    return out


def edge_session(rng, n_bins, bin_size, n_clusters=7):
    """Random spikes plus spikes exactly on (and one ulp around) every edge, including the window
    ends; windows 2 and 3 overlap; the last window holds no spike."""
    stim_on = np.array([3.0, 7.123456, 9.5, 9.5 + 0.7, 150.25])
    starts = stim_on - 0.5
    window = n_bins * bin_size
    t = [rng.uniform(0.0, 160.0, 400)]
    for t0 in starts[:-1]:
        edges = t0 + np.arange(n_bins + 1) * bin_size
        t += [edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf), rng.uniform(t0, t0 + window, 50)]
    times = np.concatenate(t)
    times = np.sort(times[(times < starts[-1] - 1) | (times > starts[-1] + window + 1)])
    clusters = rng.integers(0, n_clusters, len(times))
    return times, clusters, starts, stim_on


@pytest.mark.parametrize("n_bins, bin_size", [(100, 0.02), (37, 0.0137)])
def test_bin_spikes_equals_the_slow_reference_at_every_edge(n_bins, bin_size):
    rng = np.random.default_rng(1)
    times, clusters, starts, _ = edge_session(rng, n_bins, bin_size)
    expected = slow_bin(times, clusters, starts, n_bins, bin_size, 7)
    got = binning.bin_spikes(times, clusters, starts, n_bins, bin_size, n_clusters=7)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.uint8 and got.shape == (5, n_bins, 7)
    assert got[-1].sum() == 0  # the empty window
    # The test has teeth: floor((t − t0)/w) puts some exact-edge spikes in the wrong bin.
    t0 = starts[0]
    edges = t0 + np.arange(n_bins) * bin_size
    assert np.any(np.floor((edges - t0) / bin_size) != np.arange(n_bins))


def test_window_edges_around_stim_on():
    stim_on = np.array([10.0, 20.123])
    starts = stim_on - 0.5
    events = {"window start": stim_on - 0.5, "stimOn": stim_on, "just before end": np.nextafter(stim_on + 1.5, 0), "end": stim_on + 1.5}
    for name, t in events.items():
        counts = binning.bin_spikes(np.sort(t), np.zeros(2, dtype=np.int64), starts, n_clusters=1)
        where = {name: np.argwhere(counts[:, :, 0])[:, 1].tolist()}
        expected = {"window start": [0, 0], "stimOn": [25, 25], "just before end": [99, 99], "end": []}[name]
        assert where == {name: expected}


def test_overlapping_windows_count_a_spike_in_each():
    counts = binning.bin_spikes(np.array([1.21]), np.array([0]), np.array([0.0, 0.5, 1.0]), n_clusters=1)
    assert np.argwhere(counts[:, :, 0]).tolist() == [[0, 60], [1, 35], [2, 10]]


def test_empty_inputs():
    assert binning.bin_spikes(np.array([]), np.array([]), np.array([1.0]), n_clusters=3).shape == (1, 100, 3)
    uint32_ids = np.array([0, 4], dtype=np.uint32)  # as some ALF spikes.clusters files hold them
    assert binning.bin_spikes(np.array([1.01, 1.03]), uint32_ids, np.array([1.0]))[0, :2].nonzero()[1].tolist() == [0, 4]
    assert binning.bin_spikes(np.array([0.5]), np.array([2]), np.array([]), n_bins=10).shape == (0, 10, 3)
    assert not binning.bin_spikes(np.array([0.5, 100.0]), np.array([0, 1]), np.array([10.0, 20.0])).any()


def test_bin_spikes_rejects_bad_input():
    with pytest.raises(ValueError, match="sorted"):
        binning.bin_spikes(np.array([1.0, 0.5]), np.array([0, 0]), np.array([0.0]))
    with pytest.raises(ValueError, match="finite"):
        binning.bin_spikes(np.array([0.5]), np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="outside"):
        binning.bin_spikes(np.array([0.5]), np.array([3]), np.array([0.0]), n_clusters=3)
    with pytest.raises(ValueError, match="integer"):
        binning.bin_spikes(np.array([0.5]), np.array([0.0]), np.array([0.0]))


def test_counts_widen_past_uint8_and_chunks_agree(monkeypatch):
    times = np.sort(np.concatenate([np.full(300, 1.001), np.linspace(0, 50, 2000)]))
    clusters = np.zeros(len(times), dtype=np.int64)
    starts = np.arange(0.0, 48.0, 1.3)
    expected = slow_bin(times, clusters, starts, 100, 0.02, 1)
    # Tiny chunk budgets: many chunks, and the widening happens in a later chunk.
    monkeypatch.setattr(binning, "_PAIRS_PER_CHUNK", 50)
    monkeypatch.setattr(binning, "_CELLS_PER_CHUNK", 100)
    got = binning.bin_spikes(times, clusters, starts)
    assert got.dtype == np.uint16 and expected.max() > 255
    np.testing.assert_array_equal(got, expected)


# ----------------------------------------------------------------------------- rates and trials


def test_mean_rates_and_rate_filter():
    counts = np.zeros((2, 100, 3), dtype=np.uint8)
    counts[0, :20, 0] = 1  # 20 spikes then 0 over two 2 s trials: 5 Hz, not above 5 Hz
    counts[:, :11, 1] = 1  # 11 spikes per trial: 5.5 Hz
    counts[1, :2, 2] = 255  # 510 spikes in one trial, 0 in the other: 127.5 Hz (uint8 sums must not wrap)
    np.testing.assert_allclose(binning.mean_rates(counts, 2.0), [5.0, 5.5, 127.5])
    assert binning.rate_filter(counts, 5.0).tolist() == [False, True, True]
    assert binning.rate_filter(counts, 2.6, window_s=4.0).tolist() == [False, True, True]  # 2.5, 2.75, 63.75 Hz
    with pytest.raises(ValueError, match="trials"):
        binning.mean_rates(counts[:0], 2.0)


def hand_made_trials():
    """Trial 0 is clean; each later trial breaks exactly one rule, trial 13 breaks two."""
    n = 14
    trials = {
        "stimOn_times": np.arange(n) * 20.0 + 1.0,
        "goCue_times": np.arange(n) * 20.0 + 1.0,
        "firstMovement_times": np.arange(n) * 20.0 + 1.3,
        "feedback_times": np.arange(n) * 20.0 + 1.5,
        "choice": np.ones(n),
        "probabilityLeft": np.full(n, 0.5),
        "feedbackType": np.ones(n),
    }
    trials["firstMovement_times"][1] = trials["stimOn_times"][1] - 0.01  # negative reaction time
    trials["firstMovement_times"][2] = trials["stimOn_times"][2] + 10.01  # reaction time > 10 s
    trials["feedback_times"][3] = trials["goCue_times"][3] + 10.5  # response > 10 s
    trials["choice"][4] = 0  # no-go
    for row, name in enumerate(binning.NAN_EXCLUDED, start=5):  # rows 5..10: one NaN each
        trials[name][row] = np.nan
    trials["probabilityLeft"][11] = 0.8  # fine: a biased block
    trials["goCue_times"][12] = np.nan  # fine: NEDS does not exclude a NaN go cue
    trials["choice"][13] = 0  # two rules at once
    trials["firstMovement_times"][13] = trials["stimOn_times"][13] - 1
    return trials


def test_trial_filter_rules_each_hit_once():
    mask, reasons = binning.trial_filter(hand_made_trials())
    assert np.flatnonzero(mask).tolist() == [0, 11, 12]
    expected = {f"nan_{name}": 1 for name in binning.NAN_EXCLUDED}
    # The NaN stimOn and firstMovement rows have a NaN reaction time too: no RT rule fires on them.
    expected.update(reaction_time_negative=2, reaction_time_over_10s=1, response_over_10s=1, no_go=2, total=11)
    assert reasons == expected


def test_trial_filter_names_missing_fields():
    trials = hand_made_trials()
    del trials["goCue_times"]
    with pytest.raises(ValueError, match="goCue_times"):
        binning.trial_filter(trials)


def test_class_maps():
    assert behaviour.choice_classes(np.array([-1.0, 1.0, 1.0])).tolist() == [0, 1, 1]
    assert behaviour.block_classes(np.array([0.2, 0.5, 0.8, 0.8000000001])).tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError, match=r"choice values \[0.0\]"):
        behaviour.choice_classes(np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"probabilityLeft values \[0.3, nan\]"):
        behaviour.block_classes(np.array([0.2, 0.3, np.nan]))


# ----------------------------------------------------------------------------- dynamic behaviour


def slow_interpolate(times, values, starts, n_bins, bin_size):
    """NEDS's per-trial procedure, with scipy's interp1d."""
    out = np.full((len(starts), n_bins), np.nan)
    good = np.zeros(len(starts), dtype=bool)
    for k, t_beg in enumerate(starts):
        t_end = t_beg + n_bins * bin_size
        inside = (times > t_beg) & (times < t_end)
        t, v = times[inside], values[inside]
        if len(t) < 2 or t[0] - t_beg > bin_size or t_end - t[-1] > bin_size:
            continue
        good[k] = True
        out[k] = interp1d(t, v, kind="linear", fill_value="extrapolate")(np.linspace(t_beg + bin_size, t_end, n_bins))
    return out, good


def test_interpolation_equals_per_trial_interp1d():
    rng = np.random.default_rng(2)
    # Irregular samples ~ every 10 ms with gaps: none near trial 1's start, none near trial 2's
    # end, none at all in trial 3; a NaN sample in trial 4; trial 6 overlaps trial 5.
    times = np.cumsum(rng.uniform(0.002, 0.018, 3000))
    starts = np.array([1.0, 5.0, 9.0, 14.0, 20.0, 24.0, 25.0])
    gaps = ((times > 5.0) & (times < 5.03)) | ((times > 10.97) & (times < 11.0)) | ((times > 13.9) & (times < 16.1))
    times = times[~gaps]
    values = rng.normal(size=len(times))
    values[np.searchsorted(times, 21.0)] = np.nan
    expected, expected_good = slow_interpolate(times, values, starts, 100, 0.02)
    got, good = behaviour.interpolate_to_bins(times, values, starts, 100, 0.02)
    assert good.tolist() == expected_good.tolist() == [True, False, False, False, True, True, True]
    assert got.dtype == np.float32 and got.shape == (7, 100)
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6, equal_nan=True)
    assert np.isnan(got[4]).sum() in (1, 2)  # the NaN sample spreads to its neighbouring bins only


def test_interpolation_extrapolates_a_linear_trace_exactly():
    times = np.arange(0.013, 10.0, 0.017)
    got, good = behaviour.interpolate_to_bins(times, 3.0 * times - 1.0, np.array([2.0, 4.0]), 50, 0.04)
    np.testing.assert_allclose(got, 3.0 * (np.array([2.0, 4.0])[:, None] + 0.04 * np.arange(1, 51)) - 1.0, rtol=1e-6)
    assert good.all()


def test_minmax_scale_uses_train_trials_only():
    rng = np.random.default_rng(3)
    x = rng.uniform(2.0, 5.0, size=(10, 100))
    x[3] = np.nan  # a bad trial
    train = np.array([0, 1, 3, 4, 5, 6, 7])
    scaled, stats = behaviour.minmax_scale(x, train)
    assert stats == {"min": np.nanmin(x[train]), "max": np.nanmax(x[train])}
    assert np.nanmin(scaled[train]) == 0.0 and np.nanmax(scaled[train]) == 1.0
    changed = x.copy()
    changed[9] = 100.0  # a test trial far out of range: the statistics do not move
    rescaled, restats = behaviour.minmax_scale(changed, train)
    assert restats == stats
    np.testing.assert_array_equal(rescaled[:9], scaled[:9])
    assert rescaled[9].min() > 1.0


def test_minmax_scale_refuses_a_constant_signal():
    with pytest.raises(ValueError, match="constant"):
        behaviour.minmax_scale(np.ones((4, 10)), np.array([0, 1]))
    with pytest.raises(ValueError, match="no finite"):
        behaviour.minmax_scale(np.full((4, 10), np.nan), np.array([0, 1]))


def test_wheel_speed_is_absolute_velocity():
    assert behaviour.wheel_speed(np.array([-2.0, 0.0, 1.5])).tolist() == [2.0, 0.0, 1.5]


# ----------------------------------------------------------------------------- LFP band power


def test_lfp_band_power_finds_an_injected_sinusoid():
    fs, n_ch = 1000.0, 6
    rng = np.random.default_rng(4)
    t = np.arange(int(30 * fs)) / fs
    signal = 1e-6 * rng.normal(size=(len(t), n_ch)) + 1e-3  # noise on a DC offset
    signal[:, :3] += 1e-4 * np.sin(2 * np.pi * 20.0 * t)[:, None]  # group 0: beta
    signal[:, 3:] += 1e-4 * np.sin(2 * np.pi * 60.0 * t)[:, None]  # group 1: gamma
    starts = np.array([2.0, 10.0, 20.0])
    features = lfp_features.lfp_band_power(signal, fs, starts, channel_groups=2)
    assert features.shape == (3, 100, 8) and features.dtype == np.float32
    assert (features[:, :, :4].argmax(axis=-1) == 2).all()  # 12–30 Hz
    assert (features[:, :, 4:].argmax(axis=-1) == 3).all()  # 30–90 Hz
    # The DC offset is removed before the taper: it does not leak into the 1–4 Hz band.
    assert features[:, :, 0].max() < features[:, :, 2].min() - 3


def test_lfp_band_power_equals_scipy_periodogram():
    fs, n_win = 500.0, 150
    rng = np.random.default_rng(5)
    signal = rng.normal(size=(5000, 4)).astype(np.float32)
    start, bin_size, k = 3.0, 0.02, 7
    features = lfp_features.lfp_band_power(signal, fs, np.array([start]), n_bins=10, bin_size=bin_size, channel_groups=2)
    first = int(np.rint((start + (k + 0.5) * bin_size) * fs)) - n_win // 2
    freqs, psd = scipy.signal.periodogram(signal[first : first + n_win], fs, window="hann", detrend="constant", axis=0)
    for g, channels in enumerate(([0, 1], [2, 3])):
        for b, (lo, hi) in enumerate(lfp_features.DEFAULT_BANDS):
            inside = (freqs >= lo - 1e-9) & (freqs < hi - 1e-9)
            expected = np.log10(psd[inside][:, channels].mean() + 1e-20)
            assert features[0, k, g * 4 + b] == pytest.approx(expected, abs=1e-4)


def test_lfp_windows_off_the_recording_are_nan():
    fs = 1000.0
    signal = np.random.default_rng(6).normal(size=(3000, 2))
    starts = np.array([0.0, 1.0])
    features = lfp_features.lfp_band_power(signal, fs, starts)  # 300-sample windows
    first = np.rint((starts[:, None] + (np.arange(100) + 0.5) * 0.02) * fs).astype(int) - 150
    off = (first < 0) | (first + 300 > len(signal))
    assert off[0, :5].all() and off[1, -5:].all() and not off[:, 40:60].any()
    np.testing.assert_array_equal(np.isnan(features).any(axis=-1), off)
    np.testing.assert_array_equal(np.isnan(features).all(axis=-1), off)


def test_lfp_rejects_an_empty_band_and_too_many_groups():
    signal = np.zeros((5000, 2))
    with pytest.raises(ValueError, match="band 1.0-2.0 Hz"):
        lfp_features.lfp_band_power(signal, 1000.0, np.array([1.0]), bands=((1.0, 2.0),))
    with pytest.raises(ValueError, match="channel_groups"):
        lfp_features.lfp_band_power(signal, 1000.0, np.array([1.0]), channel_groups=3)
