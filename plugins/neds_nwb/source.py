"""The NWB data source: IBL Brain-Wide Map sessions read from NWB files (DANDI 000409), preprocessed
exactly as the `ibl` source does.

`NwbSource` subclasses `neds_ibl.source.IblSource` and overrides only its loaders (trials, spikes,
wheel, whisker, LFP, truth, meta, the session list), so NEDS's preprocessing (`IblSource._prepare`:
trial filter, binning, rate threshold, behaviour gaps, splits, scaling) is literally the same code.
Each loader returns the arrays the `ibl` source gets from ONE/brainbox:

- trials: `nwbfile.trials`, in the current IBL-to-NWB layout (gabor_stimulus_onset_time, ...,
  mouse_wheel_choice, is_mouse_rewarded, gabor_stimulus_contrast + gabor_stimulus_side) or the
  older raw-value one (stim_on_time, ..., choice, feedback_type, contrast_left/right), mapped back to
  the ALF names of `TRIAL_FIELDS`;
- spikes: `nwbfile.units` (every probe in one table), regrouped probe by probe (probe00's clusters
  first) with the same cumulative cluster ids as `IblSource._load_spikes`; regions from the
  per-unit Allen acronym (allen_location), else beryl_location, else max_electrode ->
  electrodes.location, mapped to Beryl by iblatlas;
- wheel: the raw irregular wheel position (processing/wheel/WheelPosition and its older names),
  resampled and filtered exactly as brainbox's SessionLoader.load_wheel does;
- whisker: left/right camera ROI motion energy (processing/motion_energy and its older homes);
- truth (simulated sessions only): the converter's scratch arrays neds_truth_*.

Sessions are found by reading each file's `session_id` (the eid; `<eid>-processed-only` and
`<eid>:<revision>` are accepted) or `ses-<eid>` in its name. Remote mode downloads the listed
DANDI assets into the folder first (skipping files already there); the rest is the same code.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import attrs
import numpy as np

from neds_framework.api import NedsError, NedsRunError, SessionData
from neds_ibl.one_connect import OneSettings, cache_exists
from neds_ibl.source import TRIAL_FIELDS, IblSettings, IblSource

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_SES = re.compile(r"ses-(" + UUID.pattern + ")", re.I)
DEFAULT_FOLDER = "data/nwb"
NO_LFP = "no LF band in the NWB file"
INSTALL_DANDI = "data.source.dandi.mode: remote needs the dandi client; pip install 'neds-framework[dandi]'"

# ALF trial field -> column of the current (2025-2026) IBL-to-NWB layout, then of the 2023-2024 one.
_TRIAL_COLUMNS = {
    "stimOn_times": ("gabor_stimulus_onset_time", "stim_on_time"),
    "goCue_times": ("auditory_cue_time", "go_cue_time"),
    "firstMovement_times": ("wheel_movement_onset_time", "first_movement_time"),
    "response_times": ("choice_registration_time", "response_time"),
    "feedback_times": ("feedback_time",),
    "probabilityLeft": ("probability_left",),
    "rewardVolume": ("reward_volume_uL", "reward_volume"),
    "contrastLeft": ("contrast_left",),
    "contrastRight": ("contrast_right",),
    "choice": ("choice",),
    "feedbackType": ("feedback_type",),
}
# mouse_wheel_choice -> IBL choice. Current vocabulary (brainbox's tidy trials) and the Dec-2025 one.
# A choice IBL left NaN is written 'nan' (brainbox's map leaves it NaN) and read back as NaN.
CHOICE_CODES = {"counter_clockwise": -1.0, "none": 0.0, "clockwise": 1.0, "left": -1.0, "no_go": 0.0, "right": 1.0,
                "nan": np.nan, "": np.nan}

# Where each conversion generation put the raw wheel position and the camera motion energy.
_WHEEL_SERIES = (("wheel", "WheelPosition"), ("wheel", "SpatialSeriesWheelPosition"),
                 ("wheel", "CompassDirection", "WheelPositionSeries"), ("behavior", "CompassDirection", "WheelPositionSeries"))
_MOTION_ENERGY = (("motion_energy", "{View}CameraMotionEnergy"), ("video", "TimeSeries{View}MotionEnergy"),
                  ("camera", "{View}CameraMotionEnergy"), ("behavior", "{View}CameraMotionEnergy"))

# Scratch arrays the converter (neds_nwb.write) adds for simulated sessions -> SessionData.truth names.
TRUTH_SCRATCH = {"rates": "neds_truth_rates", "behaviour_rates": "neds_truth_behaviour_rates"}
TRUTH_UUIDS = "neds_truth_uuids"
SESSION_NUMBER = "neds_session_number"


@attrs.frozen
class DandiSettings:
    """Where the NWB files are (recipe: data.source.dandi).

    mode:     'local' reads the .nwb files under `folder` (searched recursively); 'remote' first
              downloads `assets` of `dandiset`@`version` into `folder` (files already there are kept).
    folder:   default data/nwb; with data.source.synthesize, <one.cache_dir>/nwb.
    assets:   DANDI asset paths, e.g. sub-NYU-21/sub-NYU-21_ses-<eid>_desc-processed_behavior+ecephys.nwb.
    """

    mode: str = "local"
    folder: str = ""
    dandiset: str = "000409"
    version: str = "draft"
    assets: tuple[str, ...] = ()

    def check(self) -> None:
        if self.mode not in ("local", "remote"):
            raise NedsError(f"data.source.dandi.mode: expected 'local' or 'remote', got {self.mode!r}")
        if self.mode == "remote" and not self.assets:
            raise NedsError("data.source.dandi.assets: remote mode downloads the assets listed here; give their paths, "
                            "e.g. sub-<subject>/sub-<subject>_ses-<eid>_desc-processed_behavior+ecephys.nwb")
        for asset in self.assets:
            parts = Path(asset).parts
            if not asset.endswith(".nwb") or Path(asset).is_absolute() or ".." in parts:
                raise NedsError(f"data.source.dandi.assets: {asset!r} is not a relative DANDI path of an .nwb file")


@attrs.frozen
class NwbSettings(IblSettings):
    """Settings of the `nwb` data source (recipe: data.source).

    The preprocessing fields are the `ibl` source's (window, bin_size, rate_threshold_hz, ...),
    inherited so the two cannot drift apart. `one` and `synthesize` are accepted only together:
    synthetic ALF sessions are generated into `one.cache_dir` (local) and converted to NWB into
    the folder, so a recipe written for the ibl source runs on NWB with `data.source.name=nwb`.
    `lfp.enabled` is accepted; LFP is reported absent ("no LF band in the NWB file").
    """

    dandi: DandiSettings = DandiSettings()

    def check(self) -> None:
        super().check()
        self.dandi.check()
        if self.synthesize is None and self.one != OneSettings():
            raise NedsError("data.source.one: the nwb source reads NWB files (data.source.dandi.folder); `one` is only "
                            "the ALF cache that data.source.synthesize generates into: remove it, or add synthesize")
        if self.synthesize is not None:
            if self.one.mode != "local" or not self.one.cache_dir:
                raise NedsError("data.source.one: with synthesize, give {mode: local, cache_dir: DIR}, the ALF cache "
                                "the synthetic sessions are generated into before their conversion to NWB")
            if self.dandi.mode != "local":
                raise NedsError("data.source.dandi.mode: synthesize writes the NWB files locally; use mode: local")

    @property
    def folder(self) -> Path:
        if self.dandi.folder:
            return Path(self.dandi.folder)
        if self.synthesize is not None:
            return Path(self.one.cache_dir) / "nwb"
        return Path(DEFAULT_FOLDER)


class NwbSource(IblSource):
    """Prepares IBL sessions from NWB files into the same `SessionData` as the `ibl` source."""

    Settings = NwbSettings

    def __init__(self, settings: NwbSettings):
        super().__init__(settings)
        self._files: dict[str, Path] | None = None
        self._ready = False
        self._io = None
        self._open = (None, None)  # (eid, nwbfile)

    # ------------------------------------------------------------------ what to prepare

    @property
    def one(self):
        raise RuntimeError("the nwb source reads NWB files; an IblSource loader that needs ONE was not overridden")

    def _materialise(self) -> None:
        """Synthetic sessions generated and converted, or remote assets downloaded, once."""
        if self._ready:
            return
        s = self.settings
        if s.synthesize is not None:
            from neds_ibl.synth import generate
            from neds_nwb.write import convert_cache

            if not cache_exists(s.one.cache_dir):
                generate(s.one.cache_dir, s.synthesize, progress=True)
            convert_cache(s.one.cache_dir, s.folder, only_stale=True, progress=True)
        elif s.dandi.mode == "remote":
            download_assets(s.dandi, s.folder)
        self._ready = True

    def _sessions(self) -> dict[str, Path]:
        """eid -> its NWB file, from the folder (remote mode: from the listed assets only)."""
        if self._files is None:
            self._materialise()
            s = self.settings
            folder = s.folder
            if s.dandi.mode == "remote":
                paths = [folder / a for a in s.dandi.assets]
            elif folder.is_dir():
                paths = sorted(p for p in folder.rglob("*.nwb") if p.is_file() and not p.name.startswith("."))
            else:
                paths = []
            found: dict[str, list[tuple[tuple[bool, ...], Path]]] = {}
            for path in paths:
                eid, rank = file_session(path)
                # A processed file with trials and units first; on a tie, the new-format desc-processed name.
                found.setdefault(eid, []).append(((*rank, "desc-processed" in path.name), path))
            files = {}
            for eid, candidates in found.items():
                candidates.sort(key=lambda c: c[0], reverse=True)
                if len(candidates) > 1 and candidates[0][0] == candidates[1][0]:
                    raise NedsError(f"data.source.dandi.folder: session {eid} has several NWB files ({candidates[0][1]}, "
                                    f"{candidates[1][1]}); keep one per session in '{folder}'")
                files[eid] = candidates[0][1]
            self._files = files
        return self._files

    def _all_eids(self) -> list[str]:
        """Every session with an NWB file in the folder (the ibl source's `eids` does the rest)."""
        s = self.settings
        eids = sorted(self._sessions())
        if not eids:
            where = "does not exist" if not s.folder.is_dir() else "holds no NWB files (*.nwb)"
            raise NedsError(
                f"data.source.dandi.folder: '{s.folder}' {where}; put the sessions' .nwb files there, download them "
                "(data.source.dandi: {mode: remote, assets: [...]}), or convert ALF sessions with "
                f"`neds-run nwb --one-cache DIR --out {s.folder}` (the quickstart on NWB: "
                "--overlay recipes/overlays/nwb_quickstart.yaml)"
            )
        return eids

    def settings_for_hash(self) -> dict:
        """The ibl source's dict for the same preprocessing settings, with source 'nwb' (so the
        two stores are never taken for one another)."""
        fields = IblSource.settings_for_hash(self)
        fields.pop("dandi")  # where the files came from, like `one`
        return {**fields, "source": "nwb"}

    def path_of(self, eid: str) -> Path:
        self._require_known(eid)
        return self._sessions()[str(eid)]

    # ------------------------------------------------------------------ one session

    def prepare(self, eid: str) -> SessionData:
        try:
            data = super().prepare(eid)
        except NedsError:
            raise
        except Exception as exc:
            if not _raised_by_nwb_library(exc):
                raise  # a bug: keeps its traceback
            path = self._sessions().get(str(eid), f"session {eid}")
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise NedsRunError(f"{path}: its {self._step} could not be read ({text}); download the file again, or drop "
                               "the session") from exc
        finally:
            self._close()
        if self.settings.lfp.enabled:
            data.report["absent"]["lfp"] = NO_LFP
        return data

    def _nwb(self, eid: str):
        """The session's NWBFile, opened once per prepare."""
        if self._open[0] != eid:
            self._close()
            path = self.path_of(eid)
            from pynwb import NWBHDF5IO

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # cached-namespace and extension notices
                    io = NWBHDF5IO(str(path), "r")
                    nwbfile = io.read()
            except Exception as exc:  # h5py/hdmf/pynwb raise many types for a damaged or foreign file
                text = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise NedsRunError(f"{path}: pynwb cannot read it as NWB ({text}); download it again, or remove it") from exc
            self._io, self._open = io, (eid, nwbfile)
        return self._open[1]

    def _close(self) -> None:
        if self._io is not None:
            self._io.close()
        self._io, self._open = None, (None, None)

    def _damaged_files(self, eid: str) -> list:
        path = self._sessions().get(str(eid))
        if path is None:
            return []
        problem = hdf5_problem(path)
        return [(path, problem)] if problem else []

    # ------------------------------------------------------------------ loaders

    def _require_known(self, eid: str) -> None:
        if str(eid) not in self._sessions():
            s = self.settings
            how = ("add its asset path to data.source.dandi.assets" if s.dandi.mode == "remote"
                   else "download it there (data.source.dandi.mode: remote with its asset path)")
            raise NedsError(f"session {eid} has no NWB file in '{s.folder}'; {how}, or fix the eid")

    def _load_trials(self, eid: str) -> dict[str, np.ndarray]:
        nwbfile = self._nwb(eid)
        path = self.path_of(eid)
        table = nwbfile.trials
        if table is None or len(table) == 0:
            raise NedsRunError(f"{path}: no trials table (nwbfile.trials) for session {eid}; use the session's "
                               "desc-processed NWB file, or drop the session")
        columns = set(table.colnames)

        def column(name):
            return _values(table[name].data[:])

        out, missing = {}, []
        for field in TRIAL_FIELDS:
            found = next((c for c in _TRIAL_COLUMNS[field] if c in columns), None)
            if found is not None:
                out[field] = np.asarray(column(found), dtype=np.float64)
            elif field in ("contrastLeft", "contrastRight") and {"gabor_stimulus_contrast", "gabor_stimulus_side"} <= columns:
                contrast = np.asarray(column("gabor_stimulus_contrast"), dtype=np.float64) / 100.0
                side = _strings(column("gabor_stimulus_side"))
                out[field] = np.where(side == field.removeprefix("contrast").lower(), contrast, np.nan)
            elif field == "choice" and "mouse_wheel_choice" in columns:
                words = _strings(column("mouse_wheel_choice"))
                unknown = sorted(set(words) - set(CHOICE_CODES))
                if unknown:
                    raise NedsRunError(f"{path}: trials.mouse_wheel_choice holds {unknown[:5]}, not one of "
                                       f"{sorted(c for c in CHOICE_CODES if c)}; this file's conversion is not supported")
                levels, codes = np.unique(words, return_inverse=True)  # vectorised over trials
                out[field] = np.array([CHOICE_CODES[w] for w in levels], dtype=np.float64)[codes.reshape(-1)]
            elif field == "feedbackType" and "is_mouse_rewarded" in columns:
                rewarded = np.asarray(column("is_mouse_rewarded")).astype(bool)
                out[field] = np.where(rewarded, 1.0, -1.0)
            else:
                missing.append(field)
        if missing:
            raise NedsRunError(
                f"{path}: the trials table lacks {', '.join(missing)} (session {eid}; expected IBL-to-NWB columns such as "
                "gabor_stimulus_onset_time, mouse_wheel_choice, or the older stim_on_time, choice); this file's layout "
                "is not supported"
            )
        return out

    def _load_spikes(self, eid: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        nwbfile = self._nwb(eid)
        path = self.path_of(eid)
        units = nwbfile.units
        if units is None or len(units) == 0:
            raise NedsRunError(f"{path}: no units table (nwbfile.units) for session {eid}; use the session's "
                               "desc-processed NWB file (it holds the spike sorting), or drop the session")
        columns = set(units.colnames)
        lacking = [c for c in ("spike_times", "probe_name", "cluster_uuid") if c not in columns]
        depth_column = next((c for c in ("distance_from_probe_tip_um", "depth", "mean_relative_depth") if c in columns), None)
        if depth_column is None:
            lacking.append("distance_from_probe_tip_um")
        if lacking:
            raise NedsRunError(f"{path}: the units table lacks {', '.join(lacking)} (session {eid}); this file's "
                               "spike sorting layout is not supported")
        n = len(units)
        probe = np.char.lower(_strings(_values(units["probe_name"].data[:])))
        if "cluster_id" in columns:
            index = np.asarray(units["cluster_id"].data[:], dtype=np.int64)
        elif "unit_name" in columns:
            names = _strings(_values(units["unit_name"].data[:]))
            found = [re.search(r"(\d+)$", name) for name in names]
            index = np.array([int(m.group(1)) if m else i for i, m in zip(range(n), found)], dtype=np.int64)
        else:
            index = np.arange(n, dtype=np.int64)
        allen = self._unit_regions(nwbfile, units, columns, path, eid)
        # probe00's clusters first, then probe01's, each by its cluster index: IblSource._load_spikes's order.
        order = np.lexsort((index, probe))
        new_id = np.empty(n, dtype=np.int64)
        new_id[order] = np.arange(n)
        ends = np.asarray(units.spike_times_index.data[:], dtype=np.int64)
        times = np.asarray(units.spike_times.data[:], dtype=np.float64)
        if len(ends) != n or (n and ends[-1] != len(times)):
            raise NedsRunError(f"{path}: the units table's spike_times index does not match its spike times (session "
                               f"{eid}); the file is truncated: download it again")
        if not np.all(np.isfinite(times)):
            raise NedsRunError(f"{path}: units.spike_times holds non-finite values (session {eid}); download it again")
        counts = np.diff(np.concatenate([[0], ends]))
        clusters = np.repeat(new_id, counts)
        by_time = np.argsort(times, kind="stable")
        spikes = {"times": times[by_time], "clusters": clusters[by_time]}
        neurons = {
            "uuid": _strings(_values(units["cluster_uuid"].data[:]))[order],
            "region": np.asarray(self.regions.acronym2acronym(allen[order], mapping="Beryl"), dtype=str),
            "depth": np.asarray(units[depth_column].data[:], dtype=np.float32)[order],
            "probe": probe[order],
            "cluster_id": np.arange(n, dtype=np.int64),
        }
        return spikes, neurons

    def _unit_regions(self, nwbfile, units, columns, path, eid) -> np.ndarray:
        """Per-unit Allen (or Beryl) acronyms: on the units table, else through max_electrode."""
        for name in ("allen_location", "beryl_location"):
            if name in columns:
                return _strings(_values(units[name].data[:]))
        electrodes = nwbfile.electrodes
        if "max_electrode" in columns and electrodes is not None and "location" in electrodes.colnames:
            rows = units["max_electrode"].data[:]
            rows = np.asarray(rows if not hasattr(rows[0], "__len__") else [r[0] for r in rows], dtype=np.int64)
            return _strings(_values(electrodes["location"].data[:]))[rows]
        raise NedsRunError(f"{path}: no brain region per unit (units.allen_location, units.beryl_location, or "
                           f"units.max_electrode with electrodes.location) in session {eid}; this file has no histology")

    def _wheel(self, eid: str):
        series = _find(self._nwb(eid), _WHEEL_SERIES)
        if series is None:
            return None
        timestamps = np.asarray(series.timestamps[:], dtype=np.float64) if series.timestamps is not None else None
        position = np.asarray(series.data[:], dtype=np.float64).reshape(-1)
        if timestamps is None or len(timestamps) != len(position):
            raise NedsRunError(f"{self.path_of(eid)}: processing/{series.parent.name}/{series.name} has no timestamps "
                               "for each wheel position; the file is damaged or not an IBL conversion")
        times, velocity = brainbox_wheel(timestamps, position)
        from neds_ibl import behaviour

        return times, behaviour.wheel_speed(velocity), ""

    def _whisker(self, eid: str):
        nwbfile = self._nwb(eid)
        missing = []
        for view in self.settings.whisker_cameras:
            where = tuple(tuple(p.format(View=view.capitalize()) for p in place) for place in _MOTION_ENERGY)
            series = _find(nwbfile, where)
            if series is None:
                missing.append(view)
                continue
            times = np.asarray(series.timestamps[:], dtype=np.float64) if series.timestamps is not None else np.array([])
            energy = np.asarray(series.data[:]).reshape(len(series.data), -1)[:, 0] if len(series.data) else np.array([])
            # brainbox's _check_video_timestamps: fewer times than frames cannot be fixed; more are
            # the frames the camera did not record at the start.
            if len(times) < len(energy):
                raise NedsRunError(f"{self.path_of(eid)}: {series.name} has fewer timestamps ({len(times)}) than values "
                                   f"({len(energy)}); the file is damaged: download it again")
            times = times[len(times) - len(energy):]
            source = f"{view} camera" + (f" ({', '.join(missing)} not recorded)" if missing else "")
            return times, np.asarray(energy, dtype=np.float64), source
        return None

    def _lfp(self, eid: str, starts: np.ndarray) -> np.ndarray | None:
        return None  # the processed NWB files hold no LF band (prepare reports it absent)

    def _truth(self, eid: str, trial_rows: np.ndarray, uuids: np.ndarray) -> dict[str, np.ndarray]:
        scratch = self._nwb(eid).scratch
        if TRUTH_UUIDS not in scratch or TRUTH_SCRATCH["rates"] not in scratch:
            return {}
        units = _strings(_values(scratch[TRUTH_UUIDS].data[:]))
        column = {u: i for i, u in enumerate(units)}
        cols = np.array([column[u] for u in uuids])
        return {name: np.asarray(scratch[key].data[:][trial_rows][:, :, cols], dtype=np.float32)
                for name, key in TRUTH_SCRATCH.items() if key in scratch}

    def _meta(self, eid: str, s: IblSettings) -> dict:
        nwbfile = self._nwb(eid)
        number = ""
        if SESSION_NUMBER in nwbfile.scratch:
            number = str(_strings(_values(nwbfile.scratch[SESSION_NUMBER].data[:]))[0])
        units = nwbfile.units
        probes = sorted(set(np.char.lower(_strings(_values(units["probe_name"].data[:]))))) if units is not None else []
        meta = {
            "lab": str(nwbfile.lab or ""),
            "subject": str(nwbfile.subject.subject_id or "") if nwbfile.subject is not None else "",
            "date": nwbfile.session_start_time.date().isoformat(),
            "number": number,
        }
        meta.update(
            probes=",".join(probes),
            bin_size=s.bin_size,
            n_bins=s.n_bins,
            window_start=s.window[0],
            align_event=s.align_event,
            psth_conditions="probabilityLeft,choice,feedbackType",
        )
        return meta


# ---------------------------------------------------------------------- helpers


def brainbox_wheel(timestamps: np.ndarray, position: np.ndarray, fs: int = 1000, corner_frequency: int = 20,
                   order: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(times, velocity) exactly as brainbox's SessionLoader.load_wheel computes them from the raw
    wheel object: interpolate_position at 1 kHz, velocity_filtered, then every column cast to float32."""
    import pandas as pd
    from brainbox.behavior.wheel import interpolate_position, velocity_filtered

    wheel = pd.DataFrame(columns=["times", "position", "velocity", "acceleration"])
    wheel["position"], wheel["times"] = interpolate_position(timestamps, position, freq=fs)
    wheel["velocity"], wheel["acceleration"] = velocity_filtered(wheel["position"], fs=fs, corner_frequency=corner_frequency,
                                                                 order=order)
    wheel = wheel.apply(np.float32)
    return wheel["times"].to_numpy(np.float64), wheel["velocity"].to_numpy(np.float64)


def file_session(path: Path) -> tuple[str, tuple[bool, bool]]:
    """(eid, (has trials, has units)) of one NWB file, read with h5py (fast: no pynwb)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f["general/session_id"][()] if "general/session_id" in f else b""
            rank = ("intervals/trials" in f, "units" in f)
    except Exception as exc:  # noqa: BLE001 - h5py's errors for a damaged or foreign file
        raise NedsRunError(f"{path}: {hdf5_problem(path) or type(exc).__name__}; download it again, or remove it") from exc
    session_id = (raw.decode() if isinstance(raw, bytes) else str(raw)).strip()
    found = UUID.match(session_id) or _SES.search(path.name)
    if not found:
        raise NedsError(f"{path}: no IBL session eid in its session_id ({session_id!r}) or its name (ses-<eid>); "
                        "rename it sub-<subject>_ses-<eid>_....nwb, or move it out of the folder")
    eid = (found.group(1) if found.re is _SES else found.group(0)).lower()
    return eid, rank


def hdf5_problem(path: Path) -> str | None:
    import h5py

    try:
        with h5py.File(path, "r"):
            return None
    except Exception as exc:  # noqa: BLE001
        text = " ".join(str(exc).split())[:160] or type(exc).__name__
        return f"not a readable NWB (HDF5) file ({text})"


def download_assets(dandi: DandiSettings, folder: Path) -> list[Path]:
    """Each asset of `dandi.assets` into folder/<asset path>, skipping files already there."""
    targets = [folder / a for a in dandi.assets]
    todo = [(a, t) for a, t in zip(dandi.assets, targets) if not t.exists()]
    if not todo:
        return targets
    try:
        from dandi.dandiapi import DandiAPIClient
    except ImportError:
        raise NedsError(INSTALL_DANDI) from None
    where = f"dandiset {dandi.dandiset}@{dandi.version}"
    try:
        dandiset = DandiAPIClient().get_dandiset(dandi.dandiset, dandi.version)
    except Exception as exc:  # noqa: BLE001 - network and HTTP errors of many types
        raise NedsRunError(f"cannot reach {where} on DANDI ({type(exc).__name__}: {_line(exc)}); check the network, or "
                           "download the files and use data.source.dandi.mode: local") from exc
    for asset_path, target in todo:
        try:
            asset = dandiset.get_asset_by_path(asset_path)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__name__ == "NotFoundError":
                raise NedsError(f"data.source.dandi.assets: no asset {asset_path!r} in {where}; check the path") from exc
            raise NedsRunError(f"cannot look up {asset_path} in {where} ({type(exc).__name__}: {_line(exc)})") from exc
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        print(f"nwb: downloading {asset_path} from {where}")
        try:
            asset.download(partial)
            os.replace(partial, target)
        except Exception as exc:  # noqa: BLE001
            partial.unlink(missing_ok=True)
            raise NedsRunError(f"downloading {asset_path} from {where} failed ({type(exc).__name__}: {_line(exc)}); "
                               "run again to retry") from exc
    return targets


def _line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _find(nwbfile, places):
    """The first object found along any of `places` (processing module, then names inside)."""
    for module, *names in places:
        if module not in nwbfile.processing:
            continue
        obj = nwbfile.processing[module]
        for name in names:
            try:
                obj = obj[name]
            except (KeyError, TypeError):
                obj = None
                break
        if obj is not None:
            return obj
    return None


def _values(data) -> np.ndarray:
    return np.asarray(data)


def _strings(values) -> np.ndarray:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values).reshape(-1)], dtype=str)


def _raised_by_nwb_library(exc: BaseException) -> bool:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(f"{os.sep}{lib}{os.sep}" in frames[-1].filename for lib in ("h5py", "hdmf", "pynwb"))
