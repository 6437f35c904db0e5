"""The IBL data source: sessions loaded with ONE-api and brainbox, preprocessed as NEDS does.

Remote (IBL's public server) and local (a ONE cache folder, e.g. the synthetic sessions) run the
same code; only `one.mode` differs. Per session (neds-facts.md §1, with the reference's bugs
fixed):

- trials from `SessionLoader.load_trials`, filtered by NEDS's rules (`binning.trial_filter`);
- spikes of every probe from `SpikeSortingLoader`, merged with cumulative cluster-id offsets, binned
  in one vectorised pass over the session, neurons kept above a firing-rate threshold (computed,
  as in NEDS, over all trials before trial filtering);
- Beryl region acronyms from iblatlas `BrainRegions` (no atlas volume, so nothing downloads);
- wheel speed (brainbox's filtered velocity, absolute) and whisker motion energy from the left
  camera, falling back to the right one (the reference always read the right);
- choice and block classes; optional LFP band power over every probe;
- 70/10/20 trial splits drawn from a seed derived from the eid alone, and dynamic behaviours
  min-max scaled with train-split statistics only;
- the simulator's ground-truth rates when the session has them (true and behaviour-only).

A modality a session lacks is marked absent, the others kept. The wheel is speed 0 before its first
and after its last encoder tick (a still wheel logs nothing). Behaviour gaps up to
`behaviour_max_gap_s` (0.1 s: a few dropped camera frames) are interpolated; a trial whose bin edges
fall in a wider gap, or past the recording, is excluded and counted in the report by reason
(`wheel_gap`, `whisker_outside_recording`, ...), unless the behaviour misses ≥ 30 % of trials, in
which case that behaviour is marked absent instead. The camera the whisker trace came from is kept
in the session's meta (`whisker_source`) and said in the prepare report.
"""

from __future__ import annotations

import hashlib
import os
import types
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from neds_framework.api import NedsError, NedsRunError, SessionData
from neds_ibl import behaviour, binning, file_checks
from neds_ibl.one_connect import OneSettings, cache_exists, connect_one, probe_names
from neds_ibl.synth import SynthSettings, generate

# A behaviour missing from at least this share of trials is dropped as a modality (as NEDS does)
# rather than costing those trials.
MAX_BAD_BEHAVIOUR_SHARE = 0.3

TRIAL_FIELDS = (
    "stimOn_times",
    "goCue_times",
    "firstMovement_times",
    "response_times",
    "feedback_times",
    "contrastLeft",
    "contrastRight",
    "probabilityLeft",
    "choice",
    "feedbackType",
    "rewardVolume",
)


@attrs.frozen
class LfpSettings:
    """LFP band-power features (off by default, as in NEDS; here every probe is used)."""

    enabled: bool = False
    bands: tuple[tuple[float, float], ...] = ((1.0, 4.0), (4.0, 12.0), (12.0, 30.0), (30.0, 90.0))
    window_s: float = 0.3
    channel_groups: int = 1


@attrs.frozen
class IblSettings:
    """Settings of the `ibl` data source (recipe: data.source)."""

    one: OneSettings = OneSettings()
    eids: tuple[str, ...] = ()  # sessions to prepare; empty: every session in a local cache
    eids_file: str = ""  # or a text file with one eid per line
    max_sessions: int = 0  # keep the first N (0: all)
    align_event: str = "stimOn_times"
    window: tuple[float, float] = (-0.5, 1.5)
    bin_size: float = 0.02
    rate_threshold_hz: float = 5.0
    whisker_cameras: tuple[str, ...] = ("left", "right")  # tried in this order
    # Behaviour samples further apart than this leave a gap that excludes a trial whose bin edges
    # fall in it; narrower gaps (a few dropped camera frames) are interpolated across.
    behaviour_max_gap_s: float = 0.1
    lfp: LfpSettings = LfpSettings()
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    split_seed: int = 0
    # Generate synthetic sessions into one.cache_dir on first use (when it holds no ONE cache).
    synthesize: SynthSettings | None = None

    @property
    def n_bins(self) -> int:
        return int(round((self.window[1] - self.window[0]) / self.bin_size))

    def check(self) -> None:
        if self.window[1] <= self.window[0] or self.bin_size <= 0:
            raise NedsError(f"data.source: window {self.window} and bin_size {self.bin_size} give no bins")
        if abs(self.n_bins * self.bin_size - (self.window[1] - self.window[0])) > 1e-9:
            raise NedsError(f"data.source.bin_size: {self.bin_size} does not divide the window {self.window}")
        if any(f < 0 for f in self.split_fractions) or abs(sum(self.split_fractions) - 1) > 1e-9:
            raise NedsError(f"data.source.split_fractions: {self.split_fractions} must be ≥ 0 and sum to 1")
        if not (self.bin_size <= self.behaviour_max_gap_s < float("inf")):
            raise NedsError(f"data.source.behaviour_max_gap_s: {self.behaviour_max_gap_s} must be finite and at least "
                            f"bin_size ({self.bin_size})")
        if self.eids and self.eids_file:
            raise NedsError("data.source: give eids or eids_file, not both")


class IblSource:
    """Prepares IBL sessions into `SessionData`."""

    Settings = IblSettings

    def __init__(self, settings: IblSettings):
        settings.check()
        self.settings = settings
        self._one = None
        self._regions = None

    # ------------------------------------------------------------------ what to prepare

    @property
    def one(self):
        if self._one is None:
            s = self.settings
            if s.synthesize is not None and s.one.mode == "local" and not cache_exists(s.one.cache_dir):
                generate(s.one.cache_dir, s.synthesize, progress=True)
            self._one = connect_one(s.one)
        return self._one

    @property
    def regions(self):
        if self._regions is None:
            from iblatlas.regions import BrainRegions  # ships as CSV: no download

            self._regions = BrainRegions()
        return self._regions

    def eids(self) -> list[str]:
        s = self.settings
        eids = self._listed_eids()
        if eids is None:
            eids = self._all_eids()
        return eids[: s.max_sessions] if s.max_sessions else eids

    def _listed_eids(self) -> list[str] | None:
        """The sessions the recipe lists (data.source.eids or eids_file); None when it lists none."""
        s = self.settings
        if s.eids_file:
            path = Path(s.eids_file)
            if not path.exists():
                raise NedsError(f"data.source.eids_file: '{path}' not found")
            return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        return list(s.eids) if s.eids else None

    def _all_eids(self) -> list[str]:
        """Every session of the local ONE cache (what is prepared when the recipe lists none)."""
        s = self.settings
        if s.one.mode != "local":
            raise NedsError("data.source.eids: list the sessions to prepare (all-sessions is for local caches only)")
        eids = sorted(str(e) for e in self.one.search())
        if not eids:
            raise NedsError(f"data.source.one.cache_dir: no sessions in the ONE cache at '{s.one.cache_dir}'")
        return eids

    def settings_for_hash(self) -> dict:
        """Everything that changes the prepared arrays (not where the data came from)."""
        fields = attrs.asdict(self.settings)
        for where_from in ("one", "max_sessions", "synthesize", "eids", "eids_file"):
            fields.pop(where_from)  # the session list itself is added by the prepare stage
        return {"source": "ibl", "meta": 2, **fields}  # meta 2: the sessions' meta names their PSTH conditions

    # ------------------------------------------------------------------ one session

    def prepare(self, eid: str) -> SessionData:
        try:
            return self._prepare(eid)
        except NedsError:
            raise
        except Exception as exc:
            damaged = self._damaged_files(eid)
            if not damaged and _missing_files(exc):
                text = " ".join(str(exc).split("\n")[0].split())[:200]
                raise NedsRunError(
                    f"session {eid}: its {self._step} files are missing ({text}); download them again, or drop the session"
                ) from exc
            if not damaged and isinstance(exc, KeyError) and _raised_by_data_library(exc):
                raise NedsRunError(
                    f"session {eid}: its {self._step} files lack {exc} (a file missing from the session folder); "
                    "download them again, or drop the session"
                ) from exc
            if not damaged and _raised_by_data_library(exc):
                # Readable files that do not agree (an ALF object's attributes of different lengths).
                text = " ".join(str(exc).split())[:200] or type(exc).__name__
                raise NedsRunError(
                    f"session {eid}: its {self._step} files do not agree ({text}); download them again, or drop "
                    "the session"
                ) from exc
            if not damaged:
                raise  # not a file problem: a bug, with its traceback under NEDS_DEBUG
            path, problem = damaged[0]
            more = f" (and {len(damaged) - 1} more damaged file(s))" if len(damaged) > 1 else ""
            raise NedsRunError(
                f"{path}: {problem}{more}; session {eid} cannot be prepared: download it again "
                "(or regenerate a synthetic cache with neds-run synth), or drop the session"
            ) from exc

    _step = "session"  # what prepare was loading, for the message when a load fails

    def _damaged_files(self, eid: str) -> list:
        try:
            folder = Path(self.one.eid2path(eid))
        except Exception:  # noqa: BLE001 - we are already reporting a failure; no path, no names
            return []
        return file_checks.damaged_files(folder)

    def _prepare(self, eid: str) -> SessionData:
        s = self.settings
        self._require_known(eid)
        self._step = "trials"
        trials = self._load_trials(eid)
        report: dict[str, Any] = {"trials_total": int(len(trials["stimOn_times"]))}

        keep_trials, reasons = binning.trial_filter(trials)
        report["trials_excluded"] = {k: int(v) for k, v in reasons.items()}
        starts_all = trials[s.align_event] + s.window[0]
        # Spikes are binned on every trial with an alignment time: NEDS computes the rate
        # threshold over all trials, before the trial filter.
        timed = np.flatnonzero(np.isfinite(starts_all))

        self._step = "spike sorting"
        spikes, neurons = self._load_spikes(eid)
        counts = binning.bin_spikes(spikes["times"], spikes["clusters"], starts_all[timed], s.n_bins, s.bin_size, len(neurons["uuid"]))
        keep_neurons = binning.rate_filter(counts, s.rate_threshold_hz, s.n_bins * s.bin_size)
        report["neurons_total"] = int(len(keep_neurons))
        report["neurons_kept"] = int(keep_neurons.sum())
        if not keep_neurons.any():
            raise NedsRunError(
                f"session {eid}: no neuron fires above {s.rate_threshold_hz} Hz; lower data.source.rate_threshold_hz or drop the session"
            )
        # Row of each kept trial inside `counts`.
        row_of = np.full(len(starts_all), -1)
        row_of[timed] = np.arange(len(timed))

        candidate = np.flatnonzero(keep_trials)
        modalities: dict[str, np.ndarray] = {}
        meta_extra: dict[str, str] = {}
        absent: dict[str, str] = {}
        notes: dict[str, str] = {}
        windows = (np.nanmin(starts_all[candidate]), np.nanmax(starts_all[candidate]) + s.n_bins * s.bin_size) if len(candidate) else (0.0, 0.0)
        for name, loader in (("wheel", self._wheel), ("whisker", self._whisker)):
            self._step = name
            found = loader(eid)
            if found is None:
                absent[name] = "not recorded"
                continue
            times, values, source = found
            if name == "wheel":  # no encoder tick is a still wheel: speed 0, not missing data
                times, values = behaviour.pad_still(times, values, windows[0] - s.bin_size, windows[1] + s.bin_size)
            binned, status = behaviour.bin_trace(times, values, starts_all[candidate], s.n_bins, s.bin_size, s.behaviour_max_gap_s)
            good = status == behaviour.COVERED
            if np.mean(~good) >= MAX_BAD_BEHAVIOUR_SHARE:
                absent[name] = f"covers only {good.mean():.0%} of trials"
                continue
            modalities[name] = binned
            if source:
                notes[name] = source
                meta_extra[f"{name}_source"] = source
            for code, reason in behaviour.EXCLUSION_REASONS.items():
                if (status == code).any():
                    report["trials_excluded"][f"{name}_{reason}"] = int((status == code).sum())
            candidate, modalities = candidate[good], {k: v[good] for k, v in modalities.items()}
        if len(candidate) == 0:
            raise NedsRunError(f"session {eid}: no trial left after filtering ({report['trials_excluded']}); check the session's trials")

        spike_counts = counts[row_of[candidate]][:, :, keep_neurons]
        modalities["spikes"] = spike_counts  # the store writer narrows integer arrays
        modalities["choice"] = behaviour.choice_classes(trials["choice"][candidate])
        modalities["block"] = behaviour.block_classes(trials["probabilityLeft"][candidate])
        if s.lfp.enabled:
            self._step = "LFP"
            lfp = self._lfp(eid, starts_all[candidate])
            if lfp is None:
                absent["lfp"] = "no raw LF band data"
            else:
                modalities["lfp"] = lfp

        splits = split_trials(eid, len(candidate), s.split_fractions, s.split_seed)
        scaling = {}
        for name in ("wheel", "whisker"):
            if name in modalities:
                try:
                    modalities[name], scaling[name] = behaviour.minmax_scale(modalities[name], splits["train"])
                except ValueError:  # constant over the train trials: nothing to learn from it
                    del modalities[name]
                    absent[name] = "constant over the train trials"

        kept_neurons = {k: v[keep_neurons] for k, v in neurons.items()}
        truth = self._truth(eid, candidate, kept_neurons["uuid"])
        report["trials_kept"] = int(len(candidate))
        # The filter's rules may overlap (each counts its trials); "total" is every trial not kept.
        report["trials_excluded"]["total"] = report["trials_total"] - report["trials_kept"]
        report["absent"] = absent
        if notes:
            report["notes"] = notes
        trial_table = {k: v[candidate] for k, v in trials.items()}
        trial_table["trial_index"] = candidate.astype(np.int64)
        return SessionData(
            eid=eid,
            meta={**self._meta(eid, s), **meta_extra},
            neurons=kept_neurons,
            trials=trial_table,
            modalities=modalities,
            splits=splits,
            scaling=scaling,
            truth=truth,
            report=report,
        )

    # ------------------------------------------------------------------ loaders

    def _require_known(self, eid: str) -> None:
        if self.settings.one.mode == "local" and str(eid) not in {str(e) for e in self.one.search()}:
            raise NedsError(
                f"session {eid} is not in the ONE cache at '{self.settings.one.cache_dir}' and the cache is local-only; "
                "generate it (neds-run synth), fix the eid, or set data.source.one.mode=remote on a machine with internet"
            )

    def _session_loader(self, eid: str):
        from brainbox.io.one import SessionLoader

        return SessionLoader(one=self.one, eid=eid)

    def _load_trials(self, eid: str) -> dict[str, np.ndarray]:
        loader = self._session_loader(eid)
        loader.load_trials()
        df = loader.trials
        missing = [f for f in TRIAL_FIELDS if f not in df.columns]
        if len(missing) == len(TRIAL_FIELDS):
            raise NedsRunError(f"session {eid}: no trials found (neither _ibl_trials.table.pqt nor trials.*.npy files); "
                               "download them again, or drop the session")
        if missing:
            raise NedsRunError(f"session {eid}: the trials table lacks {', '.join(missing)}")
        return {f: df[f].to_numpy(dtype=np.float64) for f in TRIAL_FIELDS}

    def _load_spikes(self, eid: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """All probes merged: spike times/clusters, and per-cluster metadata with Beryl regions."""
        from brainbox.io.one import SpikeSortingLoader

        pnames = probe_names(self.one, eid)
        if not pnames:
            raise NedsRunError(f"session {eid}: no spike-sorted probe (alf/probeXX) found")
        atlas = types.SimpleNamespace(regions=self.regions)  # regions only: no CCF volume download
        times, clusters, tables = [], [], []
        offset = 0
        for pname in pnames:
            ssl = SpikeSortingLoader(one=self.one, eid=eid, pname=pname, atlas=atlas)
            for collection in ssl.collections:  # the one brainbox will pick is among these
                self._check_region_ids(eid, pname, collection)
            spk, clu, chn = ssl.load_spike_sorting()
            self._check_spike_lengths(eid, pname, spk, clu)
            clu = ssl.merge_clusters(spk, clu, chn)
            n = len(clu["channels"])
            times.append(np.asarray(spk["times"], dtype=np.float64))
            # Cumulative offsets: the reference offset only by the previous probe (wrong past two).
            clusters.append(np.asarray(spk["clusters"], dtype=np.int64) + offset)
            tables.append(
                {
                    "uuid": np.asarray(clu["uuids"], dtype=str),
                    "region": np.asarray(self.regions.acronym2acronym(np.asarray(clu["acronym"]), mapping="Beryl"), dtype=str),
                    "depth": np.asarray(clu["depths"], dtype=np.float32),
                    "probe": np.full(n, pname),
                    "cluster_id": np.arange(n, dtype=np.int64) + offset,
                }
            )
            offset += n
        all_times = np.concatenate(times)
        order = np.argsort(all_times, kind="stable")
        spikes = {"times": all_times[order], "clusters": np.concatenate(clusters)[order]}
        neurons = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
        return spikes, neurons

    def _check_spike_lengths(self, eid: str, pname: str, spk, clu) -> None:
        """spikes.times and spikes.clusters are one row per spike, and every cluster id names a
        cluster (brainbox only warns when they differ, and the binning would silently misalign)."""
        where = f"session {eid} {pname}"
        lacking = [f"spikes.{key}" for key in ("times", "clusters") if key not in spk]
        if lacking:
            raise NedsRunError(f"{where}: the spike sorting lacks {' and '.join(lacking)}; download it again, or drop the session")
        n_times, n_clusters = len(spk["times"]), len(spk["clusters"])
        if n_times != n_clusters:
            raise NedsRunError(
                f"{where}: spikes.times has {n_times} rows but spikes.clusters {n_clusters}; the spike sorting "
                "files are truncated or from different sortings: download them again"
            )
        n = len(clu["channels"]) if "channels" in clu else None
        ids = np.asarray(spk["clusters"])
        if n is not None and ids.size and (ids.min() < 0 or ids.max() >= n):
            raise NedsRunError(
                f"{where}: spikes.clusters holds ids {int(ids.min())}..{int(ids.max())} but the clusters files "
                f"describe {n} clusters; the spike sorting files do not belong together: download them again"
            )
        if not np.all(np.isfinite(spk["times"])):
            raise NedsRunError(f"{where}: spikes.times holds non-finite values; download the spike sorting again")

    def _check_region_ids(self, eid: str, pname: str, collection: str) -> None:
        """Refuse channels whose region ids iblatlas does not know (brainbox would fail obscurely)."""
        from one.alf.exceptions import ALFObjectNotFound

        try:
            ids = self.one.load_dataset(eid, "channels.brainLocationIds_ccf_2017.npy", collection=collection)
        except ALFObjectNotFound:
            return  # no histology: brainbox returns raw channels, nothing to resolve
        unknown = np.setdiff1d(ids, self.regions.id)
        if unknown.size:
            raise NedsRunError(
                f"session {eid} {pname}: unknown brain-region ids {unknown[:5].tolist()} in channels.brainLocationIds_ccf_2017 "
                "(not in iblatlas BrainRegions); fix the channel file or update iblatlas"
            )

    def _wheel(self, eid: str):
        from one.alf.exceptions import ALFObjectNotFound

        loader = self._session_loader(eid)
        try:
            loader.load_wheel()
        except ALFObjectNotFound:
            return None
        return (loader.wheel["times"].to_numpy(np.float64),
                behaviour.wheel_speed(loader.wheel["velocity"].to_numpy(np.float64)), "")

    def _whisker(self, eid: str):
        from one.alf.exceptions import ALFObjectNotFound

        loader = self._session_loader(eid)
        missing = []
        for view in self.settings.whisker_cameras:
            try:
                loader.load_motion_energy(views=[view])
            except ALFObjectNotFound:
                missing.append(view)
                continue
            frame = loader.motion_energy[f"{view}Camera"]
            # Which camera, recorded in the store's session meta and said in the prepare report.
            source = f"{view} camera" + (f" ({', '.join(missing)} not recorded)" if missing else "")
            return frame["times"].to_numpy(np.float64), frame["whiskerMotionEnergy"].to_numpy(np.float64), source
        return None

    def _lfp(self, eid: str, starts: np.ndarray) -> np.ndarray | None:
        from brainbox.io.one import SpikeSortingLoader

        from neds_ibl import lfp_features

        s = self.settings
        atlas = types.SimpleNamespace(regions=self.regions)
        features = []
        for pname in probe_names(self.one, eid):
            reader = SpikeSortingLoader(one=self.one, eid=eid, pname=pname, atlas=atlas).raw_electrophysiology(band="lf", stream=False)
            if reader is None:
                return None
            features.append(
                lfp_features.lfp_band_power(
                    _NeuralChannels(reader), reader.fs, starts, s.n_bins, s.bin_size, window_s=s.lfp.window_s, bands=s.lfp.bands, channel_groups=s.lfp.channel_groups
                )
            )
        return np.concatenate(features, axis=2).astype(np.float32)

    # Ground-truth datasets of the simulator (neds_truth collection) -> SessionData.truth names.
    # `rates` is required for any truth; the others are loaded when the session has them.
    TRUTH_DATASETS = {"rates": "truth.rates.npy", "behaviour_rates": "truth.behaviourRates.npy"}

    def _truth(self, eid: str, trial_rows: np.ndarray, uuids: np.ndarray) -> dict[str, np.ndarray]:
        """The simulator's expected counts, for the kept trials and neurons; {} for real data.

        'rates' are the true expected counts; 'behaviour_rates' (sessions generated since it
        exists) the behaviour-only oracle: the expected counts given only the shown behaviour.
        """
        from one.alf.exceptions import ALFObjectNotFound

        try:
            units = self.one.load_dataset(eid, "truth.uuids.npy", collection="neds_truth")
            arrays = {"rates": self.one.load_dataset(eid, self.TRUTH_DATASETS["rates"], collection="neds_truth")}
        except ALFObjectNotFound:
            return {}
        for name, dataset in self.TRUTH_DATASETS.items():
            if name not in arrays:
                try:
                    arrays[name] = self.one.load_dataset(eid, dataset, collection="neds_truth")
                except ALFObjectNotFound:
                    pass  # generated before this truth existed
        column = {u: i for i, u in enumerate(np.asarray(units, dtype=str))}
        cols = np.array([column[u] for u in uuids])
        return {name: np.asarray(a[trial_rows][:, :, cols], dtype=np.float32) for name, a in arrays.items()}

    def _meta(self, eid: str, s: IblSettings) -> dict:
        details = self.one.get_details(eid)  # a Series offline, a dict online
        details = {} if details is None else dict(details)
        meta = {k: str(details.get(k, "")) for k in ("lab", "subject", "date", "number")}
        meta.update(
            probes=",".join(probe_names(self.one, eid)),
            bin_size=s.bin_size,
            n_bins=s.n_bins,
            window_start=s.window[0],
            align_event=s.align_event,
            psth_conditions="probabilityLeft,choice,feedbackType",  # NEDS's PSTH conditions: block, choice, reward
        )
        return meta


class _NeuralChannels:
    """A spikeglx reader without its sync channel, sliced lazily: only the samples around each
    trial are read (a whole probe's LF band is ~14 GB as float32)."""

    def __init__(self, reader):
        self.reader = reader
        self.shape = (reader.ns, reader.nc - reader.nsync)

    def __getitem__(self, rows: slice) -> np.ndarray:
        return np.asarray(self.reader[rows, : self.shape[1]], dtype=np.float32)


def _missing_files(exc: BaseException) -> bool:
    """ONE's 'object not found on disk' (a file the cache lists but the folder lacks)."""
    from one.alf.exceptions import ALFObjectNotFound

    return isinstance(exc, ALFObjectNotFound)


def _raised_by_data_library(exc: BaseException) -> bool:
    """True when the innermost frame of the failure is in ONE-api, brainbox or iblutil: their
    ValueErrors are about the files they read (lengths that differ, an empty object), not our bugs."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and any(f"{os.sep}{lib}{os.sep}" in frames[-1].filename for lib in ("one", "brainbox", "iblutil", "ibllib"))


def split_trials(eid: str, n_trials: int, fractions: tuple[float, float, float], seed: int = 0) -> dict[str, np.ndarray]:
    """70/10/20-style splits from a seed derived from the eid alone.

    The reference seeded numpy once per run, so a session's split depended on which sessions
    were prepared before it; here it depends only on (eid, seed, n_trials).
    """
    digest = hashlib.sha256(f"{eid}:{seed}".encode()).digest()
    order = np.random.default_rng(int.from_bytes(digest[:8], "little")).permutation(n_trials)
    n_train = int(round(fractions[0] * n_trials))
    n_val = int(round(fractions[1] * n_trials))
    return {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }
