"""Issue #15: the behaviour coverage rule loses no trial to a still wheel or a dropped camera frame."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from neds_ibl import behaviour
from neds_ibl.behaviour import COVERED, GAP, OUTSIDE, bin_trace, interpolate_to_bins, pad_still
from neds_ibl.one_connect import OneSettings
from neds_ibl.source import IblSettings, IblSource
from neds_ibl.synth import SynthSettings, generate

N_BINS, BIN = 100, 0.02


def camera(duration=60.0, fs=60.0, seed=0):
    rng = np.random.default_rng(seed)
    times = np.arange(0.3, duration, 1 / fs)
    return times, rng.random(times.size)


def test_trials_neds_keeps_get_its_values_exactly():
    times, values = camera()
    starts = np.array([2.0, 10.33, 25.0, 40.7])
    ref, good = interpolate_to_bins(times, values, starts, N_BINS, BIN)
    out, status = bin_trace(times, values, starts, N_BINS, BIN)
    assert good.all() and (status == COVERED).all()
    np.testing.assert_array_equal(out, ref)


def test_a_dropped_frame_at_the_window_start_is_interpolated_not_dropped():
    times, values = camera()
    start = 10.0
    keep = ~((times > start - 0.001) & (times < start + 0.03))  # one or two frames around t_beg lost
    times, values = times[keep], values[keep]
    _, good = interpolate_to_bins(times, values, np.array([start]), N_BINS, BIN)
    out, status = bin_trace(times, values, np.array([start]), N_BINS, BIN)
    assert not good[0] and status[0] == COVERED  # NEDS's rule lost it; ours keeps it
    query = start + BIN * np.arange(1, N_BINS + 1)
    np.testing.assert_allclose(out[0], np.interp(query, times, values), rtol=1e-6)


def test_a_gap_wider_than_the_limit_excludes_the_trial():
    times, values = camera()
    keep = ~((times > 20.5) & (times < 20.75))  # a quarter second of camera lost mid-trial
    out, status = bin_trace(times[keep], values[keep], np.array([20.0, 30.0]), N_BINS, BIN, max_gap=0.1)
    assert status.tolist() == [GAP, COVERED] and np.isnan(out[0]).all()
    _, wide = bin_trace(times[keep], values[keep], np.array([20.0]), N_BINS, BIN, max_gap=0.3)
    assert wide[0] == COVERED  # within a wider limit


def test_a_window_past_the_recording_is_outside():
    times, values = camera(duration=30.0)
    out, status = bin_trace(times, values, np.array([29.5, np.nan]), N_BINS, BIN)
    assert status.tolist() == [OUTSIDE, OUTSIDE] and np.isnan(out).all()


def test_a_still_wheel_is_speed_zero_before_its_first_and_after_its_last_tick():
    times = np.arange(5.0, 10.0, 0.001)
    speed = np.full(times.size, 2.0)
    padded_t, padded_v = pad_still(times, speed, 3.0, 12.0)
    assert padded_t[0] <= 3.0 and padded_t[-1] >= 12.0 and np.all(np.diff(padded_t) > 0)
    out, status = bin_trace(padded_t, padded_v, np.array([9.0]), N_BINS, BIN)
    assert status[0] == COVERED
    assert out[0, :45].min() == pytest.approx(2.0) and (out[0, 55:] == 0).all()


# --------------------------------------------------------------------------- through the data source


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("coverage")
    return root, generate(root, SynthSettings(sessions=1, seed=9, trials=60, units=24))[0]


@pytest.fixture
def cache(pristine, tmp_path):
    root, eid = pristine
    shutil.copytree(root, tmp_path / "cache")
    session = next((tmp_path / "cache").glob("*/Subjects/*/*/*"))
    return tmp_path / "cache", eid, session / "alf"


def prepare(root, eid):
    return IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(root)))).prepare(eid)


def test_the_last_trial_of_a_still_wheel_session_is_kept(cache):
    root, eid, alf = cache
    before = prepare(root, eid)
    last = before.trials["trial_index"][-1]
    stim_on = before.trials["stimOn_times"][-1]
    # The wheel's last encoder tick comes 0.3 s after the last stimulus: the wheel is still after it.
    ticks = np.load(alf / "_ibl_wheel.timestamps.npy")
    keep = ticks <= stim_on + 0.3
    for name in ("_ibl_wheel.timestamps.npy", "_ibl_wheel.position.npy"):
        np.save(alf / name, np.load(alf / name)[keep])
    source = IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(root))))
    wheel_t, wheel_v, _ = source._wheel(eid)
    assert not interpolate_to_bins(wheel_t, wheel_v, np.array([stim_on - 0.5]), N_BINS, BIN)[1][0]  # NEDS's rule drops it
    after = prepare(root, eid)
    assert after.trials["trial_index"][-1] == last and after.n_trials == before.n_trials
    assert np.all(after.modalities["wheel"][-1, 95:] == after.modalities["wheel"][:, :].min())  # speed 0, scaled
    assert "wheel_outside_recording" not in after.report["trials_excluded"]


def test_a_dropped_camera_frame_keeps_its_trial_and_the_report_adds_up(cache):
    root, eid, alf = cache
    before = prepare(root, eid)
    start = before.trials["stimOn_times"][5] - 0.5
    times = np.load(alf / "_ibl_leftCamera.times.npy")
    energy = np.load(alf / "leftCamera.ROIMotionEnergy.npy")
    keep = ~((times > start - 0.001) & (times < start + 0.03))
    np.save(alf / "_ibl_leftCamera.times.npy", times[keep])
    np.save(alf / "leftCamera.ROIMotionEnergy.npy", energy[keep])
    assert not interpolate_to_bins(times[keep], energy[keep], np.array([start]), N_BINS, BIN)[1][0]  # NEDS's rule drops it
    after = prepare(root, eid)
    assert after.n_trials == before.n_trials
    report = after.report
    assert report["trials_excluded"]["total"] == report["trials_total"] - report["trials_kept"]
    assert after.meta["whisker_source"] == "left camera" and report["notes"]["whisker"] == "left camera"


def test_the_camera_fallback_is_recorded(cache):
    root, eid, alf = cache
    for path in alf.glob("*leftCamera*"):
        path.unlink()
    data = prepare(root, eid)
    assert data.meta["whisker_source"] == "right camera (left not recorded)"
    assert behaviour.EXCLUSION_REASONS[GAP] == "gap"
