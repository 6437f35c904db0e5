"""ALF session -> one NWB file in the current IBL-to-NWB (Brain-Wide Map, DANDI 000409) layout.

Reads the session through the same ONE/brainbox calls as the `ibl` source and writes what the
`nwb` source reads back, so the two prepare identical `SessionData` (tests/test_nwb.py):

  session_id = eid, lab, subject.subject_id (the Alyx nickname), session_start_time (the date, UTC)
  trials      (nwbfile.trials) brainbox's tidy encoding (SessionLoader.apply_tidy_transformations),
              HEAD's column names:
                start_time/stop_time         intervals_0/intervals_1
                gabor_stimulus_onset_time    stimOn_times          auditory_cue_time  goCue_times
                wheel_movement_onset_time    firstMovement_times   choice_registration_time  response_times
                feedback_time                feedback_times        gabor_stimulus_offset_time  stimOff_times
                quiescence_period            quiescencePeriod
                gabor_stimulus_contrast      percent (contrastLeft or contrastRight × 100, 2 decimals)
                gabor_stimulus_side          'left' / 'right' (the populated contrast), 'none' if both NaN
                mouse_wheel_choice           choice −1/0/+1 -> 'counter_clockwise' / 'none' / 'clockwise'
                is_mouse_rewarded            feedbackType == 1
                reward_volume_uL             rewardVolume          probability_left  probabilityLeft
                block_index, block_type      as brainbox derives them from probabilityLeft
  units       (nwbfile.units) every probe in one table, probe00's clusters first: spike_times,
              unit_name 'Probe00_<cluster>', probe_name 'Probe00', cluster_uuid,
              distance_from_probe_tip_um (clusters.depths), allen_location (merge_clusters' Allen
              acronym; HEAD keeps regions on the electrodes, the 2024 conversion on the units),
              spike_count
  wheel       processing/wheel/WheelPosition: SpatialSeries, radians, the raw irregular encoder
              timestamps (_ibl_wheel.position / .timestamps)
  whisker     processing/motion_energy/{Left,Right}CameraMotionEnergy: TimeSeries, a.u., the camera
              frame times (<view>Camera.ROIMotionEnergy / _ibl_<view>Camera.times)
  scratch     neds_truth_rates, neds_truth_behaviour_rates (float32, trials × 100 bins × units),
              neds_truth_uuids (their unit columns), neds_session_number (Alyx number): simulated
              sessions only; the layout has no place for them

File name as on DANDI: sub-<subject>/sub-<subject>_ses-<eid>_desc-processed_behavior+ecephys.nwb
(subject with '_' -> '-'). Written to a temporary file in the same folder, then renamed.
"""

from __future__ import annotations

import datetime as dt
import os
import types
import warnings
from pathlib import Path

import numpy as np

from neds_framework.api import NedsError, NedsRunError

TRIAL_COLUMNS = (  # HEAD column, ALF field, description
    ("quiescence_period", "quiescencePeriod", "quiescence period required before the stimulus (s)"),
    ("gabor_stimulus_onset_time", "stimOn_times", "time of the visual stimulus onset (s)"),
    ("auditory_cue_time", "goCue_times", "time of the go cue tone (s)"),
    ("wheel_movement_onset_time", "firstMovement_times", "time of the first wheel movement (s)"),
    ("choice_registration_time", "response_times", "time the choice was registered (s)"),
    ("feedback_time", "feedback_times", "time of the feedback (s)"),
    ("gabor_stimulus_offset_time", "stimOff_times", "time of the visual stimulus offset (s)"),
    ("gabor_stimulus_contrast", "gabor_stimulus_contrast", "stimulus contrast in percent (0, 6.25, 12.5, 25, 100)"),
    ("gabor_stimulus_side", "gabor_stimulus_side", "side of the stimulus: left, right, or none"),
    ("mouse_wheel_choice", "choice", "wheel turn: counter_clockwise (IBL choice -1), clockwise (+1), none (0, no-go)"),
    ("is_mouse_rewarded", "is_mouse_rewarded", "true when rewarded (IBL feedbackType +1)"),
    ("reward_volume_uL", "rewardVolume", "reward volume (uL)"),
    ("probability_left", "probabilityLeft", "prior probability of a left stimulus (0.5, 0.2, 0.8)"),
    ("block_type", "block_type", "unbiased, left_block or right_block"),
    ("block_index", "block_index", "block number; increments when probability_left changes"),
)

UNIT_COLUMNS = {
    "unit_name": "probe and cluster index, e.g. Probe00_12",
    "probe_name": "probe, e.g. Probe00",
    "cluster_uuid": "IBL cluster uuid (clusters.uuids)",
    "distance_from_probe_tip_um": "cluster depth from the probe tip (clusters.depths, um)",
    "allen_location": "Allen CCF acronym of the cluster's channel",
    "spike_count": "number of spikes",
}


def nwb_name(subject: str, eid: str) -> Path:
    """The DANDI path of a session's processed file."""
    sub = str(subject).replace("_", "-")
    return Path(f"sub-{sub}") / f"sub-{sub}_ses-{eid}_desc-processed_behavior+ecephys.nwb"


def alf_session_to_nwb(one, eid: str, path: str | os.PathLike, regions=None) -> Path:
    """Convert one ALF session (read through ONE/brainbox) to the NWB file at `path`; returns it."""
    from brainbox.io.one import SessionLoader, SpikeSortingLoader
    from hdmf.backends.hdf5 import H5DataIO
    from hdmf.common import VectorData, VectorIndex
    from one.alf.exceptions import ALFObjectNotFound
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import SpatialSeries
    from pynwb.core import ScratchData
    from pynwb.file import Subject
    from pynwb.misc import Units

    from neds_ibl.one_connect import probe_names

    if regions is None:
        from iblatlas.regions import BrainRegions

        regions = BrainRegions()
    path = Path(path)
    details = one.get_details(eid)
    details = {} if details is None else dict(details)
    date = details.get("date")
    date = dt.date.fromisoformat(str(date)[:10]) if date is not None else dt.date(1970, 1, 1)
    nwbfile = NWBFile(
        session_description=f"IBL session {eid}, converted from ALF by neds_nwb",
        identifier=str(eid),
        session_start_time=dt.datetime.combine(date, dt.time(0), tzinfo=dt.timezone.utc),
        session_id=str(eid),
        lab=str(details.get("lab", "")),
        protocol=str(details.get("task_protocol", "") or ""),
    )
    nwbfile.subject = Subject(subject_id=str(details.get("subject", "")), species="Mus musculus", sex="U")

    # ---- trials, in brainbox's tidy encoding
    loader = SessionLoader(one=one, eid=eid)
    loader.load_trials()
    try:
        tidy = SessionLoader.apply_tidy_transformations(loader.trials)
    except ValueError as exc:  # brainbox refuses NaN probabilityLeft (damaged trials)
        raise NedsRunError(f"session {eid}: its trials cannot be converted ({' '.join(str(exc).split())[:200]})") from exc
    for needed in ("intervals_0", "intervals_1"):
        if needed not in tidy.columns:
            raise NedsRunError(f"session {eid}: its trials lack {needed}; cannot write NWB trials without start/stop times")
    written = [(col, field, text) for col, field, text in TRIAL_COLUMNS if field in tidy.columns]
    for col, _, text in written:
        nwbfile.add_trial_column(name=col, description=text)
    values = {col: tidy[field].to_numpy() for col, field, _ in written}
    for col in ("gabor_stimulus_side", "mouse_wheel_choice", "block_type"):  # text columns; a NaN choice is 'nan'
        if col in values:
            values[col] = np.array([str(v) for v in values[col]], dtype=object)
    starts, stops = tidy["intervals_0"].to_numpy(np.float64), tidy["intervals_1"].to_numpy(np.float64)
    for i in range(len(tidy)):
        nwbfile.add_trial(start_time=float(starts[i]), stop_time=float(stops[i]),
                          **{col: _scalar(v[i]) for col, v in values.items()})

    # ---- units: every probe in one table, probe00's clusters first
    pnames = probe_names(one, eid)
    if not pnames:
        raise NedsRunError(f"session {eid}: no spike-sorted probe (alf/probeXX) found; nothing to convert")
    atlas = types.SimpleNamespace(regions=regions)
    columns: dict[str, list] = {name: [] for name in UNIT_COLUMNS}
    spike_times, counts = [], []
    for pname in pnames:
        ssl = SpikeSortingLoader(one=one, eid=eid, pname=pname, atlas=atlas)
        spk, clu, chn = ssl.load_spike_sorting()
        clu = ssl.merge_clusters(spk, clu, chn)
        lacking = [k for k in ("acronym", "uuids", "depths", "channels") if k not in clu]
        if lacking:
            raise NedsRunError(f"session {eid} {pname}: its clusters lack {', '.join(lacking)} (no histology or an "
                               "incomplete spike sorting); cannot write the units' regions")
        n = len(clu["channels"])
        times = np.asarray(spk["times"], dtype=np.float64)
        ids = np.asarray(spk["clusters"], dtype=np.int64)
        order = np.argsort(ids, kind="stable")  # each cluster's spikes keep their time order
        spike_times.append(times[order])
        per_cluster = np.bincount(ids, minlength=n)[:n]
        counts.append(per_cluster)
        canonical = "Probe" + pname.removeprefix("probe")
        columns["unit_name"] += [f"{canonical}_{k}" for k in range(n)]
        columns["probe_name"] += [canonical] * n
        columns["cluster_uuid"] += [str(u) for u in clu["uuids"]]
        columns["distance_from_probe_tip_um"].append(np.asarray(clu["depths"], dtype=np.float64))
        columns["allen_location"] += [str(a) for a in clu["acronym"]]
        columns["spike_count"].append(per_cluster.astype(np.int64))
    # Whole columns at once (hdmf converts a ragged column built unit by unit element by element).
    times_column = VectorData(name="spike_times", description="the unit's spike times (s)", data=np.concatenate(spike_times))
    table = [times_column, VectorIndex(name="spike_times_index", data=np.cumsum(np.concatenate(counts)), target=times_column)]
    for name, text in UNIT_COLUMNS.items():
        values = columns[name]
        data = np.concatenate(values) if values and isinstance(values[0], np.ndarray) else values
        table.append(VectorData(name=name, description=text, data=data))
    nwbfile.units = Units(name="units", description="spike-sorted units of every probe (IBL pykilosort)",
                          id=np.arange(len(columns["unit_name"])), columns=table)

    # ---- wheel: the raw encoder position
    try:
        wheel = one.load_object(eid, "wheel", collection=loader._find_behaviour_collection("wheel"))
    except ALFObjectNotFound:
        wheel = None
    if wheel is not None and "position" in wheel and "timestamps" in wheel:
        module = nwbfile.create_processing_module("wheel", "wheel position (IBL rotary encoder)")
        module.add(SpatialSeries(name="WheelPosition", description="absolute unwrapped wheel angle, CCW positive",
                                 data=np.asarray(wheel["position"]), timestamps=np.asarray(wheel["timestamps"], np.float64),
                                 unit="radians", reference_frame="initial angle = 0"))

    # ---- motion energy of the left and right cameras (whisker pad ROI)
    energy_module = None
    for view in ("left", "right"):
        try:
            camera = one.load_object(eid, f"{view}Camera", attribute=["ROIMotionEnergy", "times"])
        except ALFObjectNotFound:
            continue
        if "ROIMotionEnergy" not in camera or "times" not in camera:
            continue
        if energy_module is None:
            energy_module = nwbfile.create_processing_module("motion_energy", "ROI motion energy of the videos")
        energy_module.add(TimeSeries(name=f"{view.capitalize()}CameraMotionEnergy", data=np.asarray(camera["ROIMotionEnergy"]),
                                     timestamps=np.asarray(camera["times"], np.float64), unit="a.u.",
                                     description=f"motion energy of the whisker-pad ROI, {view} camera"))

    # ---- simulator truth (neds_truth collection) and the Alyx session number
    for dataset, name in (("truth.rates.npy", "neds_truth_rates"), ("truth.behaviourRates.npy", "neds_truth_behaviour_rates"),
                          ("truth.uuids.npy", "neds_truth_uuids")):
        try:
            array = np.asarray(one.load_dataset(eid, dataset, collection="neds_truth"))
        except ALFObjectNotFound:
            continue
        data = [str(u) for u in array] if array.dtype.kind in "US" else H5DataIO(array, compression="gzip")
        nwbfile.add_scratch(ScratchData(name=name, data=data, description=f"neds simulator ground truth ({dataset})"))
    if details.get("number") is not None:
        nwbfile.add_scratch(ScratchData(name="neds_session_number", data=[str(details["number"])],
                                        description="Alyx session number"))

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with NWBHDF5IO(str(partial), "w") as io:
                io.write(nwbfile)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _scalar(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def convert_cache(cache_dir: str | os.PathLike, out_dir: str | os.PathLike, eids=None, only_stale: bool = False,
                  progress: bool = False) -> list[Path]:
    """Convert sessions of a local ONE cache (all, or `eids`) into out_dir; returns the NWB paths.

    only_stale: keep a session's NWB file when it is newer than the cache tables (sessions.pqt).
    """
    from iblatlas.regions import BrainRegions
    from tqdm import tqdm

    from neds_ibl.one_connect import OneSettings, connect_one

    one = connect_one(OneSettings(mode="local", cache_dir=str(cache_dir)))
    known = sorted(str(e) for e in one.search())
    if eids:
        unknown = [e for e in eids if str(e) not in known]
        if unknown:
            raise NedsError(f"nwb: session {unknown[0]} is not in the ONE cache at '{cache_dir}'; fix the eid")
        todo = [str(e) for e in eids]
    else:
        todo = known
    if not todo:
        raise NedsError(f"nwb: no sessions in the ONE cache at '{cache_dir}'")
    stamp = (Path(cache_dir) / "sessions.pqt").stat().st_mtime
    regions = BrainRegions()
    out = []
    for eid in tqdm(todo, desc="nwb", unit="session", disable=not progress):
        details = one.get_details(eid)
        path = Path(out_dir) / nwb_name(dict(details).get("subject", "unknown"), eid)
        if not (only_stale and path.exists() and path.stat().st_mtime >= stamp):
            alf_session_to_nwb(one, eid, path, regions)
        out.append(path)
    return out
