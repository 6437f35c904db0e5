"""The synthetic IBL session generator, read back through the real ONE (local mode) and brainbox."""

from __future__ import annotations

import logging
import types
import uuid
import warnings

import attrs
import numpy as np
import pytest

from neds_ibl.one_cache import NAMESPACE, session_eid
from neds_ibl.synth import SynthSettings, generate, simulate_session, truth_edges
from neds_ibl.synth_spikes import family_mean, unit_rates
from neds_ibl.synth_task import COVARIATES, DT

MAIN = SynthSettings(sessions=2, seed=7, trials=300, units=60, probes=2)
SMALL = SynthSettings(sessions=1, seed=11, trials=40, units=12)
IBL_CONTRASTS = {1.0, 0.25, 0.125, 0.0625, 0.0}


@pytest.fixture(scope="module")
def regions():
    from iblatlas.regions import BrainRegions

    return BrainRegions()


@pytest.fixture(scope="module")
def main(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_main")
    return root, generate(root, MAIN)


@pytest.fixture(scope="module")
def one(main):
    from one.api import One

    return One(cache_dir=main[0], mode="local")


@pytest.fixture(scope="module")
def loaders(one, main):
    """SessionLoader of each session with trials, wheel and both cameras loaded."""
    from brainbox.io.one import SessionLoader

    out = []
    for eid in main[1]:
        sl = SessionLoader(one=one, eid=eid)
        sl.load_trials()
        sl.load_wheel()
        sl.load_motion_energy(views=["left", "right"])
        out.append(sl)
    return out


@pytest.fixture(scope="module")
def sorted_probes(one, main, regions):
    """{(session, probe): (spikes, merged clusters)} through SpikeSortingLoader."""
    from brainbox.io.one import SpikeSortingLoader

    atlas = types.SimpleNamespace(regions=regions)
    out = {}
    for s, eid in enumerate(main[1]):
        for pname in ("probe00", "probe01"):
            ssl = SpikeSortingLoader(one=one, eid=eid, pname=pname, atlas=atlas)
            spikes, clusters, channels = ssl.load_spike_sorting()
            out[s, pname] = spikes, ssl.merge_clusters(spikes, clusters, channels)
    return out


def session_dir(root, index, lab="synthlab"):
    return root / lab / "Subjects" / f"SYN{index:03d}" / f"2024-01-{index + 1:02d}" / "001"


def arrays_of(root):
    return {p.relative_to(root): np.load(p) for p in sorted(root.rglob("*.npy"))}


# ------------------------------------------------------------------------------------- identity & layout


def test_eids_are_uuid3_of_the_session_path_and_stable_across_rebuilds(tmp_path, main):
    root, eids = main
    for i, eid in enumerate(eids):
        assert eid == str(uuid.uuid3(NAMESPACE, f"synthlab/SYN{i:03d}/2024-01-{i + 1:02d}/001"))
        assert eid == session_eid("synthlab", f"SYN{i:03d}", f"2024-01-{i + 1:02d}", "001")
        assert uuid.UUID(eid).version == 3  # ONE accepts only versions 3 and 4
    assert generate(tmp_path, attrs.evolve(SMALL, sessions=2, seed=99)) == eids  # eids name paths, not content
    assert generate(tmp_path, attrs.evolve(SMALL, sessions=2, seed=99)) == eids  # same folder, rebuilt


def test_same_seed_same_bytes_different_seed_different_data(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    generate(a, SMALL)
    generate(b, SMALL)
    generate(c, attrs.evolve(SMALL, seed=SMALL.seed + 1))
    # Every session file, byte for byte (the cache tables at the root record their folder and date).
    files = sorted(p.relative_to(a) for p in (a / "synthlab").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in (b / "synthlab").rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    arrays_a, arrays_c = arrays_of(a), arrays_of(c)
    assert arrays_a.keys() == arrays_c.keys()
    for rel in ("alf/_ibl_wheel.position.npy", "alf/probe00/pykilosort/spikes.times.npy", "neds_truth/truth.rates.npy"):
        key = session_dir(a, 0).relative_to(a) / rel
        assert not np.array_equal(arrays_a[key], arrays_c[key])


def test_a_rerun_with_fewer_sessions_leaves_none_behind(tmp_path, one):
    from one.api import One

    generate(tmp_path, attrs.evolve(SMALL, sessions=2))
    eids = generate(tmp_path, SMALL)
    assert [str(e) for e in One(cache_dir=tmp_path, mode="local").search()] == eids  # ONE returns uuid.UUID
    assert not session_dir(tmp_path, 1).exists()


def test_layout_truth_beside_alf_and_only_the_cache_tables_at_the_root(main):
    root, _ = main
    assert sorted(p.name for p in root.glob("*.pqt")) == ["datasets.pqt", "sessions.pqt"]
    assert not list(root.glob(".one_cache-*"))  # the builder's temporary folder is gone
    session = session_dir(root, 0)
    assert (session / "neds_truth" / "truth.rates.npy").exists()
    assert not list((session / "alf").rglob("truth*"))
    assert (session / "alf" / "probe01" / "pykilosort" / "spikes.times.npy").exists()


def test_loading_raises_no_warnings_about_revisions_or_hashes(main, regions, caplog):
    from brainbox.io.one import SessionLoader, SpikeSortingLoader
    from one.api import One

    root, eids = main
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        one = One(cache_dir=root, mode="local")
        sl = SessionLoader(one=one, eid=eids[0])
        sl.load_trials()
        sl.load_wheel()
        sl.load_motion_energy(views=["left", "right"])
        ssl = SpikeSortingLoader(one=one, eid=eids[0], pname="probe01", atlas=types.SimpleNamespace(regions=regions))
        ssl.merge_clusters(*ssl.load_spike_sorting())
        one.load_dataset(eids[0], "truth.rates.npy", collection="neds_truth")
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ----------------------------------------------------------------------------------------------- trials


def test_trials_table_columns_and_value_sets(loaders):
    for sl in loaders:
        t = sl.trials
        expected = {"intervals_0", "intervals_1", "stimOn_times", "goCue_times", "response_times", "firstMovement_times",
                    "feedback_times", "contrastLeft", "contrastRight", "probabilityLeft", "choice", "feedbackType",
                    "rewardVolume", "stimOff_times", "quiescencePeriod"}  # the last two are files outside the table
        assert expected <= set(t.columns) and len(t) == MAIN.trials
        left, right = t["contrastLeft"].to_numpy(), t["contrastRight"].to_numpy()
        assert np.all(np.isnan(left) ^ np.isnan(right))  # exactly one side shows the stimulus
        assert set(np.unique(np.where(np.isnan(left), right, left))) == IBL_CONTRASTS
        assert set(t["choice"].unique()) == {-1.0, 0.0, 1.0}
        assert set(t["feedbackType"].unique()) == {-1.0, 1.0}
        reward = t["rewardVolume"].to_numpy()
        correct = t["feedbackType"].to_numpy() > 0
        assert np.all(reward[~correct] == 0) and np.all((reward[correct] >= 1.5) & (reward[correct] <= 3.0))
        # Correct = choice +1 (CW) for a left stimulus, −1 for a right one.
        side = np.where(np.isnan(left), -1.0, 1.0)
        assert np.array_equal(correct, t["choice"].to_numpy() == side)
        assert np.all(np.diff(t["intervals_0"]) > 0) and np.all(t["intervals_1"] > t["intervals_0"])
        assert 20 * 60 <= t["intervals_1"].iloc[-1] <= 32 * 60  # 300 trials: a 20–30 min session


def test_block_structure(loaders):
    for sl in loaders:
        p_left = sl.trials["probabilityLeft"].to_numpy()
        assert np.all(p_left[:90] == 0.5) and set(p_left[90:]) == {0.2, 0.8}
        change = np.flatnonzero(np.diff(p_left[90:]) != 0) + 1
        runs = np.diff(np.concatenate([[0], change, [p_left.size - 90]]))
        assert np.all(runs[:-1] >= 20) and np.all(runs <= 100)  # the last block is cut by the session end
        assert np.all(p_left[90:][change] != p_left[90:][change - 1])  # 0.2 and 0.8 alternate


def test_psychometric_and_block_prior_shape_choices(loaders):
    t = np.concatenate([sl.trials[["contrastLeft", "contrastRight", "probabilityLeft", "choice"]].to_numpy() for sl in loaders])
    signed_left = np.nan_to_num(t[:, 0]) - np.nan_to_num(t[:, 1])
    go = t[:, 3] != 0
    easy = go & (np.abs(signed_left) >= 0.25)
    assert np.mean(t[easy, 3] == np.sign(signed_left[easy])) > 0.85
    zero = go & (signed_left == 0)
    p_left_choice = [np.mean(t[zero & (t[:, 2] == p), 3] == 1) for p in (0.2, 0.8)]
    assert p_left_choice[1] > p_left_choice[0] + 0.2  # the prior biases guesses


def test_reaction_time_outliers_for_neds_filters(loaders):
    columns = ["stimOn_times", "firstMovement_times", "choice", "feedback_times", "goCue_times"]
    t = np.concatenate([sl.trials[columns].to_numpy() for sl in loaders])
    rt = t[:, 1] - t[:, 0]
    assert np.nanmedian(rt) == pytest.approx(0.3, abs=0.08)
    assert np.sum(rt > 10) >= 1 and np.sum(rt < 0) >= 1
    assert np.sum(np.isnan(t[:, 1]) & (t[:, 2] != 0)) >= 1  # movement onset undetected
    assert np.sum(t[:, 3] - t[:, 4] > 10) >= 1


# ------------------------------------------------------------------------------------ wheel & cameras


def test_wheel_turns_in_the_choice_direction(loaders):
    for sl in loaders:
        t, w = sl.trials, sl.wheel
        assert np.all(np.diff(w["times"]) > 0)
        ok = (t["firstMovement_times"] - t["stimOn_times"]).between(0.05, 10) & (t["choice"] != 0)
        start = np.interp(t["stimOn_times"][ok], w["times"], w["position"])
        end = np.interp(t["response_times"][ok], w["times"], w["position"])
        # CCW positive: choice −1 (CCW) raises the position, +1 (CW) lowers it.
        assert np.mean(np.sign(end - start) == -t["choice"][ok]) > 0.95


def test_raw_wheel_samples_are_irregular_dense_while_moving(one, main):
    wheel = one.load_object(main[1][0], "wheel", collection="alf")
    moves = one.load_object(main[1][0], "wheelMoves", collection="alf")
    gaps = np.diff(wheel["timestamps"])
    assert wheel["position"].shape == wheel["timestamps"].shape and gaps.min() > 0
    assert np.median(gaps) < 0.01 and gaps.max() > 1.0
    assert moves["intervals"].shape == (moves["peakAmplitude"].size, 2)


def test_both_cameras_load_and_differ(loaders):
    me = loaders[0].motion_energy
    left, right = me["leftCamera"], me["rightCamera"]
    assert 1 / np.median(np.diff(left["times"])) == pytest.approx(60, rel=0.01)
    assert 1 / np.median(np.diff(right["times"])) == pytest.approx(150, rel=0.01)
    assert abs(left["whiskerMotionEnergy"].mean() - right["whiskerMotionEnergy"].mean()) > 100
    # Whisking follows running: more motion energy while the wheel turns.
    speed = np.abs(np.interp(left["times"], loaders[0].wheel["times"], loaders[0].wheel["velocity"]))
    assert np.corrcoef(speed, left["whiskerMotionEnergy"])[0, 1] > 0.2


def test_dropping_the_left_camera_leaves_the_right(tmp_path):
    from brainbox.io.one import SessionLoader
    from one.alf.exceptions import ALFObjectNotFound
    from one.api import One

    eid = generate(tmp_path, attrs.evolve(SMALL, drop=("leftCamera", "wheelMoves")))[0]
    one = One(cache_dir=tmp_path, mode="local")
    sl = SessionLoader(one=one, eid=eid)
    with pytest.raises(ALFObjectNotFound):
        sl.load_motion_energy(views=["left"])
    sl.load_motion_energy(views=["right"])
    assert len(sl.motion_energy["rightCamera"]) > 0
    with pytest.raises(ALFObjectNotFound):
        one.load_object(eid, "wheelMoves")
    sl.load_wheel()  # the wheel itself is still there


# -------------------------------------------------------------------------------------- spike sorting


INTENDED = {"probe00": {"VISa", "CA1", "DG", "LP", "PO", "root"}, "probe01": {"VISam", "CA1", "CA3", "DG", "LGd", "PO", "VPM", "root"}}


def test_two_probes_load_with_real_regions_through_beryl(sorted_probes, regions):
    for (s, pname), (spikes, clusters) in sorted_probes.items():
        n = clusters["channels"].size
        assert n == MAIN.units // 2
        assert np.all(np.diff(spikes["times"]) >= 0) and spikes["times"].dtype == np.float64
        assert spikes["clusters"].max() < n and {"amps", "depths"} <= set(spikes)
        assert np.all(np.isin(clusters["label"], [0, 1 / 3, 2 / 3, 1]))
        beryl = set(regions.acronym2acronym(clusters["acronym"], mapping="Beryl"))
        assert beryl <= INTENDED[pname] and len(beryl) >= 4
        assert any(a != b for a, b in zip(clusters["acronym"], regions.acronym2acronym(clusters["acronym"], mapping="Beryl")))
        assert {"VISa5", "VISam5"} & set(regions.id2acronym(np.unique(clusters["atlas_id"])))


def test_truth_shape_nan_rows_and_unit_columns(one, main, sorted_probes, loaders):
    for s, eid in enumerate(main[1]):
        rates = one.load_dataset(eid, "truth.rates.npy", collection="neds_truth")
        probes = one.load_dataset(eid, "truth.probes.npy", collection="neds_truth")
        ids = one.load_dataset(eid, "truth.clusterIds.npy", collection="neds_truth")
        uuids = one.load_dataset(eid, "truth.uuids.npy", collection="neds_truth")
        assert rates.shape == (MAIN.trials, 100, MAIN.units) and rates.dtype == np.float32
        assert probes.dtype.kind == uuids.dtype.kind == "U" and ids.dtype == np.int64
        half = MAIN.units // 2
        assert list(probes) == ["probe00"] * half + ["probe01"] * half
        assert np.array_equal(ids, np.r_[np.arange(half), np.arange(half)])
        assert np.array_equal(uuids[:half], sorted_probes[s, "probe00"][1]["uuids"].to_numpy(dtype=str))
        missing = loaders[s].trials["stimOn_times"].isna().to_numpy()
        assert np.array_equal(np.isnan(rates).all(axis=(1, 2)), missing) and not np.isnan(rates[~missing]).any()


@pytest.fixture(scope="module")
def rebuilt():
    """Session 0 of MAIN simulated again in memory: the generator is reproducible by (seed, index)."""
    return simulate_session(MAIN, 0)


def test_truth_is_the_exact_integral_of_the_sampling_rate(main, rebuilt):
    truth = np.load(session_dir(main[0], 0) / "neds_truth" / "truth.rates.npy")
    stim_on = rebuilt.task.trials["stimOn_times"]
    probe = rebuilt.probes[1]
    units = [0, 7, 29]
    rate = unit_rates(probe.units.subset(units), rebuilt.task.covariates)
    edges = truth_edges(stim_on)
    for trial in (3, 150, 299):
        for k in (0, 37, 99):
            # Midpoint rule with 1 µs sub-steps over the piecewise-constant rate: ~1e-4 relative error.
            t = np.arange(edges[trial, k], edges[trial, k + 1], 1e-6) + 0.5e-6
            direct = rate[:, np.floor(t / DT).astype(int)].sum(axis=1) * 1e-6
            np.testing.assert_allclose(truth[trial, k, MAIN.units // 2 + np.array(units)], direct, rtol=1e-3)


def test_spike_counts_match_truth_statistically(main, rebuilt):
    truth = np.load(session_dir(main[0], 0) / "neds_truth" / "truth.rates.npy")
    edges = truth_edges(rebuilt.task.trials["stimOn_times"])
    ok = np.isfinite(edges[:, 0])
    start, stop = edges[ok, 0], edges[ok, -1]
    for p, probe in enumerate(rebuilt.probes):
        times, clusters = probe.spikes["times"], probe.spikes["clusters"]
        lo, hi = np.searchsorted(times, start), np.searchsorted(times, stop)
        in_window = np.concatenate([clusters[a:b] for a, b in zip(lo, hi)])
        observed = np.bincount(in_window, minlength=len(probe.units))
        expected = truth[ok][:, :, p * len(probe.units) : (p + 1) * len(probe.units)].sum(axis=(0, 1))
        z = (observed - expected) / np.sqrt(expected)
        assert np.abs(z).max() < 5 and abs(z.mean()) < 0.6


def test_rates_span_units_below_and_above_5_hz(main):
    for s in range(MAIN.sessions):
        truth = np.load(session_dir(main[0], s) / "neds_truth" / "truth.rates.npy")
        hz = np.nanmean(truth, axis=(0, 1)) / 0.02  # NEDS's firing-rate filter, on the expected counts
        assert 0.1 <= np.mean(hz < 5) <= 0.6 and hz.min() < 2 and hz.max() > 20


def test_tuning_families_are_shared_across_sessions(regions):
    assert np.array_equal(family_mean("VISa"), family_mean("VISa"))
    a, b = (simulate_session(attrs.evolve(SMALL, units=150, trials=30), i, regions).probes[0].units for i in range(2))
    assert not np.array_equal(a.baseline, b.baseline)  # different neurons...
    for units in (a, b):  # ...from the same families: visual cortex is stimulus-driven, hippocampus is not
        stimulus = {r: np.median(units.weights[units.beryl == r, 0]) for r in ("VISa", "CA1")}
        assert stimulus["VISa"] > 0.5 > abs(stimulus["CA1"])


# ------------------------------------------------------------------------------------------------- LFP


def test_lfp_loads_through_raw_electrophysiology(tmp_path, regions):
    from brainbox.io.one import SpikeSortingLoader
    from one.api import One

    settings = attrs.evolve(SMALL, lfp=True, lfp_channels=6, probes=2)
    eid = generate(tmp_path, settings)[0]
    session = simulate_session(settings, 0, regions)
    one = One(cache_dir=tmp_path, mode="local")
    atlas = types.SimpleNamespace(regions=regions)
    for p in range(2):
        reader = SpikeSortingLoader(one=one, eid=eid, pname=f"probe{p:02d}", atlas=atlas).raw_electrophysiology(band="lf", stream=False)
        sites, data = session.lfp[p]
        assert reader.fs == 2500 and reader.nc == 7 and reader.nsync == 1 and reader.type == "lf"
        assert reader.ns == data.shape[0] == int(session.task.duration * 2500)
        signal = reader[:, : reader.nc - reader.nsync]
        np.testing.assert_allclose(signal, data[:, :-1] * reader.sample2volts[:-1], rtol=1e-6)
        np.testing.assert_array_equal(reader.geometry["y"], 20.0 * (sites // 2 + 1))
        reader.close()


def test_lfp_theta_power_tracks_running(regions):
    from scipy.signal import butter, sosfiltfilt

    from neds_ibl.synth_lfp import LFP_FS

    session = simulate_session(attrs.evolve(SMALL, lfp=True, lfp_channels=8, trials=60), 0, regions)
    _, data = session.lfp[0]
    speed = session.task.covariates[COVARIATES.index("wheel")]
    step = np.minimum((np.arange(data.shape[0]) / LFP_FS / DT).astype(int), speed.size - 1)
    theta = sosfiltfilt(butter(3, (6, 10), btype="bandpass", fs=LFP_FS, output="sos"), data[:, :-1].astype(float), axis=0) ** 2
    moving, still = speed[step] > 0.3, speed[step] < 0.01
    ratio = theta[moving].mean(axis=0) / theta[still].mean(axis=0)
    assert ratio.max() > 1.5  # strongest on hippocampal sites, where theta dominates
