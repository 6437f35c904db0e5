"""Synthetic IBL sessions: genuine ALF folders plus ONE cache tables, readable offline by ONE and brainbox.

The project's embedded data (quickstart, tests). Each session is an IBL-like recording of the
visual decision task (synth_task) with one or two Neuropixels probes (synth_spikes) and,
optionally, raw LF-band data (synth_lfp), written under
`out/<lab>/Subjects/SYN<iii>/<2024-01-01 + i days>/001/` with eid = uuid3 of that path
(one_cache.session_eid), so eids are the same on every rebuild.

Ground truth sits beside the ALF data, in `<session>/neds_truth/` (never inside `alf/`):
  truth.rates.npy       float32 (n_trials, 100, n_units): the exact expected spike count of each
                        unit in NEDS bin k = [stimOn − 0.5 + 0.02 k, stimOn − 0.5 + 0.02 (k + 1)) of
                        every row of the trials table; NaN rows where stimOn_times is NaN
  truth.behaviourRates.npy  float32, same shape and NaN rows: the behaviour-only oracle, the
                        expected count given only what a model is shown (wheel, whisking, choice,
                        block), with the stimulus and the shared latents marginalised
                        (synth_spikes.behaviour_truth documents how, and its approximations)
  truth.probes.npy      <U7, per unit column: 'probe00' or 'probe01'
  truth.clusterIds.npy  int64, per unit column: the cluster id within its probe
  truth.uuids.npy       <U36, per unit column: the cluster's uuid, as in clusters.uuids.csv
Unit columns are probe00's clusters 0..n0−1, then probe01's 0..n1−1.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import attrs
import numpy as np
import pandas as pd

from neds_framework.api import NedsError
from neds_ibl.one_cache import CACHE_TABLES, build_one_cache, session_eid
from neds_ibl.synth_spikes import Probe, simulate_probe
from neds_ibl.synth_task import Task, simulate_task

# NEDS's window (neds-facts.md §1.4): 100 bins of 20 ms from stimOn − 0.5 s.
TRUTH_START, TRUTH_BIN, TRUTH_BINS = -0.5, 0.02, 100

DROPPABLE = ("wheel", "wheelMoves", "leftCamera", "rightCamera", "bodyCamera")
# Trial attributes written as their own files, outside the table, as some IBL sessions have them.
_TRIALS_OUTSIDE_TABLE = ("stimOff_times", "quiescencePeriod")
# Independent random streams per session, so e.g. turning LFP on does not change the spikes.
_STREAMS = ("task", "probe00", "probe01", "lfp")


@attrs.frozen
class SynthSettings:
    """What to generate (recipe: data.source.synthesize; CLI: neds-run synth)."""

    sessions: int = 2
    seed: int = 0
    trials: int = 300
    units: int = 150  # per session, split across probes
    probes: int = 1  # 1 or 2
    lfp: bool = False  # raw LF-band data (spikeglx .cbin) for each probe
    lfp_channels: int = 8
    drop: tuple[str, ...] = ()  # ALF objects to leave out of every session, e.g. ('leftCamera',)
    lab: str = "synthlab"

    def check(self) -> None:
        bad = sorted(set(self.drop) - set(DROPPABLE))
        if bad:
            raise NedsError(f"synthesize.drop: cannot drop {bad}; droppable: {', '.join(DROPPABLE)}")
        if self.probes not in (1, 2):
            raise NedsError(f"synthesize.probes: 1 or 2, got {self.probes}")
        if self.sessions < 1 or self.seed < 0 or self.trials < 1 or self.units < self.probes:
            raise NedsError("synthesize: need sessions ≥ 1, seed ≥ 0, trials ≥ 1 and at least one unit per probe")
        if not 1 <= self.lfp_channels <= 192:  # one column of a Neuropixels 1.0 probe
            raise NedsError(f"synthesize.lfp_channels: 1..192, got {self.lfp_channels}")


@attrs.frozen
class Session:
    """One simulated session, before it is written."""

    subject: str
    date: str
    number: int
    task: Task
    probes: list[Probe]
    lfp: list[tuple[np.ndarray, np.ndarray]]  # per probe: (recorded sites, int16 samples); [] without LFP

    def relative_path(self, lab: str) -> Path:
        return Path(lab, "Subjects", self.subject, self.date, f"{self.number:03d}")

    def eid(self, lab: str) -> str:
        return session_eid(lab, self.subject, self.date, self.number)


def truth_edges(stim_on: np.ndarray) -> np.ndarray:
    """(n_trials, TRUTH_BINS + 1) bin edges of the truth; NaN rows where stimOn is NaN."""
    return stim_on[:, None] + TRUTH_START + TRUTH_BIN * np.arange(TRUTH_BINS + 1)[None, :]


def simulate_session(settings: SynthSettings, index: int, regions=None) -> Session:
    """Session `index` of `settings`: reproducible on its own from (seed, index)."""
    from iblatlas.regions import BrainRegions  # a CSV shipped with iblatlas: no download

    regions = regions if regions is not None else BrainRegions()
    streams = dict(zip(_STREAMS, (np.random.default_rng(s) for s in np.random.SeedSequence([settings.seed, index]).spawn(len(_STREAMS)))))
    task = simulate_task(streams["task"], settings.trials)
    edges = truth_edges(task.trials["stimOn_times"])
    split = np.array_split(np.arange(settings.units), settings.probes)
    probes = [simulate_probe(streams[f"probe{p:02d}"], task, p, len(units), regions, edges) for p, units in enumerate(split)]
    lfp = []
    if settings.lfp:
        from neds_ibl.synth_lfp import lfp_channel_sites, simulate_lfp
        from neds_ibl.synth_spikes import probe_channels

        sites = lfp_channel_sites(settings.lfp_channels)
        for p in range(settings.probes):
            acronyms = probe_channels(p, regions)[1][sites]
            beryl = regions.acronym2acronym(acronyms, mapping="Beryl")
            lfp.append((sites, simulate_lfp(streams["lfp"], task, beryl, settings.lfp_channels)))
    date = (dt.date(2024, 1, 1) + dt.timedelta(days=index)).isoformat()
    return Session(subject=f"SYN{index:03d}", date=date, number=1, task=task, probes=probes, lfp=lfp)


def _save(folder: Path, name: str, values) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, np.asarray(values), allow_pickle=False)


def _write_task(alf: Path, task: Task, drop: tuple[str, ...]) -> None:
    table = {k: v for k, v in task.trials.items() if k not in _TRIALS_OUTSIDE_TABLE}
    alf.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(alf / "_ibl_trials.table.pqt")
    for attr in _TRIALS_OUTSIDE_TABLE:
        _save(alf, f"_ibl_trials.{attr}.npy", task.trials[attr])
    for obj, arrays in task.wheel.items():
        if obj not in drop:
            for attr, values in arrays.items():
                _save(alf, f"_ibl_{obj}.{attr}.npy", values)
    for view, (times, energy) in task.cameras.items():
        if f"{view}Camera" not in drop:
            _save(alf, f"_ibl_{view}Camera.times.npy", times)
            _save(alf, f"{view}Camera.ROIMotionEnergy.npy", energy)


def _write_probe(folder: Path, probe: Probe) -> None:
    for attr, values in probe.spikes.items():
        _save(folder, f"spikes.{attr}.npy", values)
    for attr in ("channels", "depths", "amps"):
        _save(folder, f"clusters.{attr}.npy", probe.clusters[attr])
    pd.DataFrame(probe.clusters["metrics"]).to_parquet(folder / "clusters.metrics.pqt")
    pd.DataFrame({"uuids": probe.uuids}).to_csv(folder / "clusters.uuids.csv", index=False)
    for attr, values in probe.channels.items():
        _save(folder, f"channels.{attr}.npy", values)


def _write_truth(folder: Path, probes: list[Probe]) -> None:
    _save(folder, "truth.rates.npy", np.concatenate([p.truth for p in probes], axis=2).astype(np.float32))
    _save(folder, "truth.behaviourRates.npy", np.concatenate([p.behaviour_truth for p in probes], axis=2).astype(np.float32))
    _save(folder, "truth.probes.npy", np.concatenate([np.full(len(p.units), p.name) for p in probes]).astype("<U7"))
    _save(folder, "truth.clusterIds.npy", np.concatenate([np.arange(len(p.units), dtype=np.int64) for p in probes]))
    _save(folder, "truth.uuids.npy", np.concatenate([p.uuids for p in probes]).astype("<U36"))


def write_session(path: Path, session: Session, drop: tuple[str, ...] = ()) -> None:
    """Write one session's ALF folders, optional raw LFP and truth under `path` (replaced whole)."""
    if path.exists():
        shutil.rmtree(path)  # no stale files from another run
    _write_task(path / "alf", session.task, drop)
    for probe in session.probes:
        _write_probe(path / "alf" / probe.name / "pykilosort", probe)
    for p, (sites, data) in enumerate(session.lfp):
        from neds_ibl.synth_lfp import write_raw_lfp

        write_raw_lfp(path / "raw_ephys_data" / f"probe{p:02d}", p, data, sites, serial=18194800000 + p)
    _write_truth(path / "neds_truth", session.probes)


def plugin_simulators() -> list[tuple[str, object]]:
    """(modality, simulate) of every declared modality that says how the `ibl` source reads it
    and how its simulator writes it: ``simulate(session, folder, rng)`` gets the simulated
    `Session` (task: trials, wheel, cameras; probes) and its session folder, after the built-in
    files are written, and writes the ALF files its ``read`` loads (the ONE cache indexes them)."""
    from neds_framework.api import get_plugins

    out = []
    for entry in get_plugins().registries.modalities:
        how = entry.factory.sources.get("ibl")
        if how is not None and callable(getattr(how, "simulate", None)):
            out.append((entry.name, how.simulate))
    return out


def generate(out_dir: str | Path, settings: SynthSettings, progress: bool = False) -> list[str]:
    """Write `settings.sessions` sessions and the ONE cache tables at `out_dir`; returns the eids in order.

    The generator owns `out_dir/<lab>/`: a previous run's sessions there are removed, so the cache
    lists exactly this run's sessions (plus any other lab's). The cache tables are removed first
    and written last, so an interrupted run leaves no cache that points at half-written sessions.
    """
    from iblatlas.regions import BrainRegions
    from tqdm import tqdm

    settings.check()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for table in CACHE_TABLES:
        (out / table).unlink(missing_ok=True)
    if (out / settings.lab).exists():
        shutil.rmtree(out / settings.lab)
    regions = BrainRegions()
    extras = plugin_simulators()
    eids = []
    for index in tqdm(range(settings.sessions), desc="synth", unit="session", disable=not progress):
        session = simulate_session(settings, index, regions)
        folder = out / session.relative_path(settings.lab)
        write_session(folder, session, settings.drop)
        for i, (name, simulate) in enumerate(extras):  # modalities other plugins add (ModalitySpec.sources)
            simulate(session, folder, np.random.default_rng([settings.seed, index, 1_000 + i]))
        eids.append(session.eid(settings.lab))
    build_one_cache(out)
    return eids
