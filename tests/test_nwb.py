"""The nwb data source: synthetic ALF sessions converted to NWB (neds_nwb.write) prepare into the
same SessionData as the ibl source reads from ALF, through the same NEDS preprocessing."""

from __future__ import annotations

import shutil
import sys
import textwrap
import types
from pathlib import Path

import attrs
import h5py
import numpy as np
import pytest

from neds_framework import cli
from neds_framework.data.store import SessionStore
from neds_framework.errors import NedsError, NedsRunError
from neds_ibl.one_connect import OneSettings
from neds_ibl.source import IblSettings, IblSource, LfpSettings
from neds_ibl.synth import SynthSettings, generate
from neds_nwb.source import DandiSettings, NwbSettings, NwbSource
from neds_nwb.write import convert_cache
from tests.helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]
TINY = SynthSettings(sessions=2, seed=7, trials=60, units=24, probes=2)


@pytest.fixture(scope="module")
def two_probes(tmp_path_factory):
    """Two 2-probe sessions, converted with the `neds-run nwb` command."""
    root = tmp_path_factory.mktemp("nwb2p")
    eids = generate(root / "alf", TINY)
    assert cli.main(["nwb", "--one-cache", str(root / "alf"), "--out", str(root / "nwb")]) == 0
    return root / "alf", root / "nwb", eids


@pytest.fixture(scope="module")
def right_camera(tmp_path_factory):
    """One 1-probe session without the left camera (the whisker falls back to the right one)."""
    root = tmp_path_factory.mktemp("nwb1p")
    eids = generate(root / "alf", attrs.evolve(TINY, sessions=1, probes=1, seed=8, drop=("leftCamera",)))
    convert_cache(root / "alf", root / "nwb")
    return root / "alf", root / "nwb", eids


def ibl_source(alf, **kw) -> IblSource:
    return IblSource(IblSettings(one=OneSettings(mode="local", cache_dir=str(alf)), **kw))


def nwb_source(folder, **kw) -> NwbSource:
    return NwbSource(NwbSettings(dandi=DandiSettings(folder=str(folder)), **kw))


def assert_same(a, b) -> None:
    """Every array and value of two SessionData equal (NaN equal to NaN)."""
    assert a.eid == b.eid
    assert a.meta == b.meta
    for group in ("neurons", "trials", "modalities", "splits", "truth"):
        x, y = getattr(a, group), getattr(b, group)
        assert set(x) == set(y), group
        for key in x:
            assert x[key].dtype == y[key].dtype, (group, key)
            assert np.array_equal(x[key], y[key], equal_nan=x[key].dtype.kind == "f"), (group, key)
    assert a.scaling == b.scaling
    assert a.report == b.report


@pytest.mark.parametrize("cache", ["two_probes", "right_camera"])
def test_nwb_twin_prepares_identical_sessions(cache, request):
    alf, folder, eids = request.getfixturevalue(cache)
    ibl, nwb = ibl_source(alf), nwb_source(folder)
    assert nwb.eids() == ibl.eids() == sorted(eids)
    for eid in eids:
        a, b = ibl.prepare(eid), nwb.prepare(eid)
        assert_same(a, b)
        assert {"spikes", "wheel", "whisker", "choice", "block"} <= set(b.modalities) and b.truth
    if cache == "two_probes":
        assert set(b.neurons["probe"]) == {"probe00", "probe01"} and b.meta["probes"] == "probe00,probe01"
    else:
        assert b.meta["whisker_source"].startswith("right camera")


def test_same_preprocessing_settings_give_the_same_sessions_and_hash(two_probes):
    alf, folder, eids = two_probes
    kw = dict(rate_threshold_hz=2.0, split_seed=4, whisker_cameras=("right", "left"))
    ibl, nwb = ibl_source(alf, **kw), nwb_source(folder, **kw)
    assert_same(ibl.prepare(eids[1]), nwb.prepare(eids[1]))
    assert nwb.settings_for_hash() == {**ibl.settings_for_hash(), "source": "nwb"}
    assert nwb_source(folder).settings_for_hash() != nwb.settings_for_hash()


def test_file_follows_the_dandi_layout(two_probes):
    from pynwb import NWBHDF5IO

    alf, folder, eids = two_probes
    files = sorted(folder.rglob("*.nwb"))
    assert [f.relative_to(folder).as_posix() for f in files] == sorted(
        f"sub-SYN00{i}/sub-SYN00{i}_ses-{eid}_desc-processed_behavior+ecephys.nwb" for i, eid in enumerate(eids))
    assert not list(folder.rglob(".*"))  # no temporary file left behind
    with NWBHDF5IO(str(files[0]), "r") as io:
        f = io.read()
        assert f.session_id in eids and f.lab == "synthlab" and f.subject.subject_id.startswith("SYN")
        trials = f.trials.to_dataframe()
        assert {"gabor_stimulus_onset_time", "auditory_cue_time", "wheel_movement_onset_time", "choice_registration_time",
                "feedback_time", "gabor_stimulus_contrast", "gabor_stimulus_side", "mouse_wheel_choice",
                "is_mouse_rewarded", "reward_volume_uL", "probability_left", "block_index"} <= set(trials.columns)
        assert set(trials["mouse_wheel_choice"]) <= {"clockwise", "counter_clockwise", "none"}
        assert set(trials["gabor_stimulus_contrast"]) <= {0.0, 6.25, 12.5, 25.0, 100.0}
        assert set(f.units["probe_name"].data[:]) == {"Probe00", "Probe01"}
        assert f.processing["wheel"]["WheelPosition"].unit == "radians"
        assert set(f.processing["motion_energy"].data_interfaces) == {"LeftCameraMotionEnergy", "RightCameraMotionEnergy"}
        assert {"neds_truth_rates", "neds_truth_behaviour_rates", "neds_truth_uuids"} <= set(f.scratch)


def _older_layout(src: Path, dst: Path) -> None:
    """The 2023-2024 conversions' layout, rebuilt from a converted file: raw-value trials columns,
    Beryl region on the units, wheel in CompassDirection, motion energy in processing/camera."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import CompassDirection, SpatialSeries
    from pynwb.core import ScratchData
    from iblatlas.regions import BrainRegions

    with NWBHDF5IO(str(src), "r") as io:
        f = io.read()
        new = NWBFile(session_description="older layout", identifier="x", session_start_time=f.session_start_time,
                      session_id=f"{f.session_id}-processed-only", lab=f.lab)
        new.subject = type(f.subject)(subject_id=f.subject.subject_id, species="Mus musculus")
        t = f.trials.to_dataframe()
        side, contrast = t["gabor_stimulus_side"].to_numpy(), t["gabor_stimulus_contrast"].to_numpy() / 100
        columns = {
            "stim_on_time": t["gabor_stimulus_onset_time"], "go_cue_time": t["auditory_cue_time"],
            "first_movement_time": t["wheel_movement_onset_time"], "response_time": t["choice_registration_time"],
            "feedback_time": t["feedback_time"], "probability_left": t["probability_left"],
            "reward_volume": t["reward_volume_uL"],
            "contrast_left": np.where(side == "left", contrast, np.nan), "contrast_right": np.where(side == "right", contrast, np.nan),
            "choice": t["mouse_wheel_choice"].map({"counter_clockwise": -1.0, "none": 0.0, "clockwise": 1.0}),
            "feedback_type": np.where(t["is_mouse_rewarded"], 1.0, -1.0),
        }
        for name in columns:
            new.add_trial_column(name=name, description=name)
        for i in range(len(t)):
            new.add_trial(start_time=t["start_time"].iloc[i], stop_time=t["stop_time"].iloc[i],
                          **{k: float(np.asarray(v)[i]) for k, v in columns.items()})
        u = f.units
        beryl = BrainRegions().acronym2acronym(np.asarray(u["allen_location"].data[:]), mapping="Beryl")
        for name in ("probe_name", "cluster_uuid", "cluster_id", "mean_relative_depth", "beryl_location"):
            new.add_unit_column(name=name, description=name)
        rows = np.arange(len(u))[::-1]  # any row order: the reader regroups by probe and cluster id
        for r in rows:
            probe = str(u["probe_name"].data[r])
            new.add_unit(spike_times=u.get_unit_spike_times(int(r)), probe_name=probe.lower(),
                         cluster_uuid=str(u["cluster_uuid"].data[r]),
                         cluster_id=int(str(u["unit_name"].data[r]).rsplit("_", 1)[1]),
                         mean_relative_depth=float(u["distance_from_probe_tip_um"].data[r]), beryl_location=str(beryl[r]))
        wheel = f.processing["wheel"]["WheelPosition"]
        behavior = new.create_processing_module("behavior", "behaviour")
        behavior.add(CompassDirection(spatial_series=SpatialSeries(
            name="WheelPositionSeries", data=wheel.data[:], timestamps=wheel.timestamps[:], unit="rad", reference_frame="0")))
        camera = new.create_processing_module("camera", "cameras")
        for name, series in f.processing["motion_energy"].data_interfaces.items():
            camera.add(TimeSeries(name=name, data=series.data[:], timestamps=series.timestamps[:], unit="a.u."))
        for name, scratch in f.scratch.items():
            new.add_scratch(ScratchData(name=name, data=scratch.data[:], description=scratch.description))
        with NWBHDF5IO(str(dst), "w") as out:
            out.write(new)


def test_older_conversion_layout_reads_the_same(two_probes, tmp_path):
    alf, folder, eids = two_probes
    src = next(folder.rglob(f"*{eids[0]}*.nwb"))
    _older_layout(src, tmp_path / "sub-SYN000_behavior+ecephys.nwb")
    assert_same(ibl_source(alf).prepare(eids[0]), nwb_source(tmp_path).prepare(eids[0]))


def test_lfp_is_reported_absent(two_probes):
    alf, folder, eids = two_probes
    data = nwb_source(folder, lfp=LfpSettings(enabled=True)).prepare(eids[0])
    assert "lfp" not in data.modalities and data.report["absent"]["lfp"] == "no LF band in the NWB file"


# ---------------------------------------------------------------------- the recipe path


def test_recipe_prepare_and_train_on_nwb_match_the_ibl_store(tmp_path, capsys):
    ibl = tiny_recipe(tmp_path, "ibl", stages="[prepare]", store="ibl.h5")
    # The same tiny recipe with the nwb source: its `one` + `synthesize` name the ALF cache to convert.
    nwb = tiny_recipe(tmp_path, "nwb", stages="[prepare, train]", epochs=1, store="nwb.h5")
    text = nwb.read_text().replace("name: ibl", "name: nwb")
    nwb.write_text(text)
    assert cli.main([str(ibl), "--set", "prepare.progress=false"]) == 0
    assert cli.main([str(nwb), "--set", "prepare.progress=false"]) == 0, capsys.readouterr().err
    assert len(list((tmp_path / "cache" / "nwb").rglob("*.nwb"))) == 2  # converted beside the ALF cache
    with SessionStore(tmp_path / "ibl.h5") as a, SessionStore(tmp_path / "nwb.h5") as b:
        assert a.eids == b.eids and len(a.eids) == 2
        for eid in a.eids:
            x, y = a.info(eid), b.info(eid)
            assert (x.n_trials, x.n_neurons, x.modalities) == (y.n_trials, y.n_neurons, y.modalities)
            assert_same(a.load(eid), b.load(eid))
    assert (tmp_path / "runs" / "nwb" / "run.h5").exists()


QUICKSTART = str(ROOT / "recipes" / "quickstart.yaml")
OVERLAY = str(ROOT / "recipes" / "overlays" / "nwb_quickstart.yaml")


def test_quickstart_validates_with_the_nwb_source(capsys):
    # One --set switches the source; a section naming another plugin replaces the recipe's whole,
    # so this nwb source has its defaults (the .nwb files under data/nwb).
    assert cli.main(["validate", QUICKSTART, "--set", "data.source.name=nwb"]) == 0
    assert cli.main(["validate", QUICKSTART, "--overlay", OVERLAY, "--dump"]) == 0
    dumped = capsys.readouterr().out
    assert "name: nwb" in dumped and "synthesize" in dumped
    # Or one --set of the whole section, with the ibl keys the nwb source accepts.
    whole = "data.source={name: nwb, one: {mode: local, cache_dir: data/generated/quickstart}, synthesize: {sessions: 2}}"
    assert cli.main(["validate", QUICKSTART, "--set", whole, "--dump"]) == 0
    assert "cache_dir: data/generated/quickstart" in capsys.readouterr().out


def test_quickstart_overlay_prepares_on_nwb(tmp_path, capsys):
    tiny = ["--set", "stages=[prepare]", "--set", f"run.dir={tmp_path / 'runs'}",
            "--set", f"data.source.one.cache_dir={tmp_path / 'qs'}", "--set", f"data.store={tmp_path / 'qs.h5'}",
            "--set", "data.source.synthesize={sessions: 1, seed: 0, trials: 60, units: 24}", "--set", "prepare.progress=false"]
    assert cli.main([QUICKSTART, "--overlay", OVERLAY, *tiny]) == 0, capsys.readouterr().err
    assert len(list((tmp_path / "qs" / "nwb").rglob("*.nwb"))) == 1
    with SessionStore(tmp_path / "qs.h5") as store:
        assert len(store.eids) == 1 and store.info(store.eids[0]).n_trials > 40
    # Run again: the NWB file is current (newer than the ALF cache), not rewritten; the store is current.
    stamp = next((tmp_path / "qs" / "nwb").rglob("*.nwb")).stat().st_mtime_ns
    assert cli.main([QUICKSTART, "--overlay", OVERLAY, *tiny]) == 0
    assert next((tmp_path / "qs" / "nwb").rglob("*.nwb")).stat().st_mtime_ns == stamp
    assert "is current" in capsys.readouterr().out


# ---------------------------------------------------------------------- bad input: one line each


def _recipe(tmp_path, source: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(f"""\
        extends: {ROOT / 'recipes' / 'common' / 'neds_mm.yaml'}
        stages: [prepare]
        run: {{dir: {tmp_path / 'runs'}}}
        data:
          store: {tmp_path / 'bad.h5'}
          source: {source}
        """))
    return path


def _one_line_error(capsys, code: int, argv) -> str:
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("[neds-run] stage ")]  # the stage banner
    assert len(lines) == 1 and lines[0].startswith("neds-run: error: ") and "Traceback" not in err, err
    return lines[0]


def test_folder_without_nwb_files(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    recipe = _recipe(tmp_path, f"{{name: nwb, dandi: {{folder: {tmp_path / 'empty'}}}}}")
    err = _one_line_error(capsys, 2, [str(recipe), "--set", "prepare.progress=false"])
    assert "holds no NWB files" in err and "neds-run nwb" in err


def test_file_without_trials_table(two_probes, tmp_path, capsys):
    alf, folder, eids = two_probes
    src = next(folder.rglob(f"*{eids[0]}*.nwb"))
    bad = tmp_path / "nwb" / src.name
    bad.parent.mkdir()
    shutil.copy(src, bad)
    with h5py.File(bad, "a") as f:
        del f["intervals/trials"]
    recipe = _recipe(tmp_path, f"{{name: nwb, dandi: {{folder: {tmp_path / 'nwb'}}}}}")
    err = _one_line_error(capsys, 1, [str(recipe), "--set", "prepare.progress=false"])
    assert str(bad) in err and "no trials table" in err
    with pytest.raises(NedsRunError, match="no trials table"):
        nwb_source(tmp_path / "nwb").prepare(eids[0])


def test_damaged_file_is_named(two_probes, tmp_path):
    alf, folder, eids = two_probes
    (tmp_path / f"sub-X_ses-{eids[0]}_desc-processed_behavior+ecephys.nwb").write_bytes(b"not hdf5")
    with pytest.raises(NedsRunError, match="not a readable NWB"):
        nwb_source(tmp_path).eids()


ASSET = "sub-SYN000/sub-SYN000_ses-{eid}_desc-processed_behavior+ecephys.nwb"


def test_remote_without_the_dandi_client(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "dandi", None)  # `import dandi...` raises ImportError
    monkeypatch.setitem(sys.modules, "dandi.dandiapi", None)
    asset = ASSET.format(eid="6ed57216-498d-48a6-b48b-a243a34710ea")
    recipe = _recipe(tmp_path, f"{{name: nwb, dandi: {{mode: remote, folder: {tmp_path / 'dl'}, assets: [{asset}]}}}}")
    err = _one_line_error(capsys, 2, [str(recipe), "--set", "prepare.progress=false"])
    assert err.endswith("data.source.dandi.mode: remote needs the dandi client; pip install 'neds-framework[dandi]'")


def test_remote_mode_downloads_then_reads_locally(two_probes, tmp_path, monkeypatch):
    """A stand-in for the dandi client (no network): downloads are copies of the converted file."""
    alf, folder, eids = two_probes
    calls = []

    class Asset:
        def __init__(self, path):
            self.path = path

        def download(self, target):
            calls.append(self.path)
            shutil.copy(next(folder.rglob(Path(self.path).name)), target)

    class Dandiset:
        def get_asset_by_path(self, path):
            return Asset(path)

    class DandiAPIClient:
        def get_dandiset(self, dandiset_id, version):
            assert (dandiset_id, version) == ("000409", "draft")
            return Dandiset()

    api = types.ModuleType("dandi.dandiapi")
    api.DandiAPIClient = DandiAPIClient
    monkeypatch.setitem(sys.modules, "dandi", types.ModuleType("dandi"))
    monkeypatch.setitem(sys.modules, "dandi.dandiapi", api)
    asset = ASSET.format(eid=eids[0])
    settings = NwbSettings(dandi=DandiSettings(mode="remote", folder=str(tmp_path / "dl"), assets=(asset,)))
    src = NwbSource(settings)
    assert src.eids() == [eids[0]] and (tmp_path / "dl" / asset).exists()
    assert_same(ibl_source(alf).prepare(eids[0]), src.prepare(eids[0]))
    NwbSource(settings).eids()  # already there: not downloaded again
    assert calls == [asset]


def test_settings_mistakes(tmp_path):
    with pytest.raises(NedsError, match="dandi.mode: expected"):
        NwbSource(NwbSettings(dandi=DandiSettings(mode="cloud")))
    with pytest.raises(NedsError, match="dandi.assets: remote mode"):
        NwbSource(NwbSettings(dandi=DandiSettings(mode="remote")))
    with pytest.raises(NedsError, match="`one` is only"):
        NwbSource(NwbSettings(one=OneSettings(cache_dir=str(tmp_path))))
    with pytest.raises(NedsError, match="has no NWB file"):
        nwb_source(tmp_path).prepare("00000000-0000-4000-8000-000000000000")


def test_nwb_command_errors(two_probes, tmp_path, capsys):
    alf, folder, eids = two_probes
    err = _one_line_error(capsys, 2, ["nwb", "--one-cache", str(alf), "--out", str(tmp_path), "--eid", "nope"])
    assert "not in the ONE cache" in err
    err = _one_line_error(capsys, 2, ["nwb", "--one-cache", str(tmp_path / "none"), "--out", str(tmp_path)])
    assert "no ONE cache tables" in err


def test_session_eid_from_session_id_or_file_name(tmp_path):
    from neds_nwb.source import file_session

    eid = "6ed57216-498d-48a6-b48b-a243a34710ea"
    for name, session_id in ((f"sub-A_ses-{eid}_desc-processed_behavior+ecephys.nwb", "not-an-eid"),
                             ("a.nwb", f"{eid}-processed-only"), ("b.nwb", f"{eid}:2025-05-06"), ("c.nwb", eid.upper())):
        with h5py.File(tmp_path / name, "w") as f:
            f["general/session_id"] = session_id
            f.create_group("intervals/trials")
        assert file_session(tmp_path / name) == (eid, (True, False))
    with h5py.File(tmp_path / "d.nwb", "w") as f:
        f["general/session_id"] = "mystery"
    with pytest.raises(NedsError, match="no IBL session eid"):
        file_session(tmp_path / "d.nwb")
