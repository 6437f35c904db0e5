"""Synthetic IBL sessions: genuine ALF folders plus ONE cache tables, readable offline by ONE and brainbox.

The project's embedded default data (quickstart, tests). Each session is an IBL-like recording of
the visual decision task (synth_task) with one or two Neuropixels probes (synth_spikes), written
under `out/<lab>/Subjects/<subject>/<date>/<number>/`. The simulator's ground truth — the expected
spike count of every unit in every NEDS bin of every trial — is written beside the ALF data, in
`neds_truth/` (never inside `alf/`): `truth.rates.npy` (trials, 100, units) and, per unit column
(probe00's units first), `truthUnits.probes.npy`, `truthUnits.clusterIds.npy`, `truthUnits.uuids.npy`.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
from tqdm import tqdm

from neds_ibl.one_cache import build_one_cache, session_eid
from neds_ibl.synth_spikes import PROBE_LAYOUTS, simulate_probe
from neds_ibl.synth_task import simulate_task

# The NEDS window whose expected counts the truth holds (neds-facts.md §1.4).
TRUTH_WINDOW = (-0.5, 1.5)
TRUTH_BIN = 0.02

DROPPABLE = ("wheel", "wheelMoves", "leftCamera", "rightCamera", "bodyCamera")


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
    drop: tuple[str, ...] = ()  # ALF objects to leave out, e.g. ('leftCamera',)
    lab: str = "synthlab"

    def check(self) -> None:
        bad = sorted(set(self.drop) - set(DROPPABLE))
        if bad:
            raise ValueError(f"synthesize.drop: cannot drop {bad}; droppable: {', '.join(DROPPABLE)}")
        if self.probes not in (1, 2):
            raise ValueError(f"synthesize.probes: 1 or 2, got {self.probes}")


def session_path(out: Path, settings: SynthSettings, index: int) -> tuple[Path, str]:
    subject = f"SYN{index:03d}"
    date = (dt.date(2024, 1, 1) + dt.timedelta(days=index)).isoformat()
    path = out / settings.lab / "Subjects" / subject / date / "001"
    return path, session_eid(settings.lab, subject, date, 1)


def generate(out_dir: str | Path, settings: SynthSettings, progress: bool = False) -> list[str]:
    """Write the sessions and the ONE cache tables; returns the eids in session order."""
    settings.check()
    from iblatlas.regions import BrainRegions  # CSV shipped with iblatlas: no download

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    regions = BrainRegions()
    eids = []
    for index in tqdm(range(settings.sessions), desc="synth", unit="session", disable=not progress):
        path, eid = session_path(out, settings, index)
        if path.exists():
            shutil.rmtree(path)  # a session is rewritten whole: no stale files from another run
        # One generator per session, derived from (seed, index): sessions are reproducible alone.
        rng = np.random.default_rng([settings.seed, index])
        _write_session(path, settings, rng, regions)
        eids.append(eid)
    build_one_cache(out)
    return eids


def _save(folder: Path, name: str, values) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / name, np.asarray(values))


def _write_session(path: Path, settings: SynthSettings, rng: np.random.Generator, regions) -> None:
    alf = path / "alf"
    task = simulate_task(rng, settings.trials)

    table = {k: v for k, v in task.trials.items() if k not in ("stimOff_times", "quiescencePeriod")}
    alf.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(table).to_parquet(alf / "_ibl_trials.table.pqt")
    _save(alf, "_ibl_trials.stimOff_times.npy", task.trials["stimOff_times"])
    _save(alf, "_ibl_trials.quiescencePeriod.npy", task.trials["quiescencePeriod"])
    for obj, arrays in task.wheel.items():
        if obj not in settings.drop:
            for attr, values in arrays.items():
                _save(alf, f"_ibl_{obj}.{attr}.npy", values)
    for view, (times, energy) in task.cameras.items():
        if f"{view}Camera" not in settings.drop:
            _save(alf, f"_ibl_{view}Camera.times.npy", times)
            _save(alf, f"{view}Camera.ROIMotionEnergy.npy", energy)

    edges = task.trials["stimOn_times"][:, None] + TRUTH_WINDOW[0] + TRUTH_BIN * np.arange(101)[None, :]
    unit_split = np.array_split(np.arange(settings.units), settings.probes)
    truth: dict[str, list] = {"rates": [], "probes": [], "clusterIds": [], "uuids": []}
    for p, units in enumerate(unit_split):
        name = f"probe{p:02d}"
        probe = simulate_probe(rng, task, name, PROBE_LAYOUTS[p], len(units), regions, edges)
        folder = alf / name / "pykilosort"
        for attr, values in probe.spikes.items():
            _save(folder, f"spikes.{attr}.npy", values)
        _save(folder, "clusters.channels.npy", probe.clusters["channels"])
        _save(folder, "clusters.depths.npy", probe.clusters["depths"])
        _save(folder, "clusters.amps.npy", probe.clusters["amps"])
        pd.DataFrame(probe.clusters["metrics"]).to_parquet(folder / "clusters.metrics.pqt")
        pd.DataFrame({"uuids": probe.uuids}).to_csv(folder / "clusters.uuids.csv", index=False)
        for attr, values in probe.channels.items():
            _save(folder, f"channels.{attr}.npy", values)
        truth["rates"].append(probe.truth_rates)
        truth["probes"].append(np.full(len(units), name))
        truth["clusterIds"].append(np.arange(len(units)))
        truth["uuids"].append(probe.uuids)
        if settings.lfp:
            from neds_ibl.synth_lfp import write_raw_lfp

            write_raw_lfp(path / "raw_ephys_data" / name, p, task, rng, settings.lfp_channels)
    folder = path / "neds_truth"
    _save(folder, "truth.rates.npy", np.concatenate(truth["rates"], axis=2).astype(np.float32))
    for attr in ("probes", "uuids"):
        _save(folder, f"truthUnits.{attr}.npy", np.concatenate(truth[attr]).astype(str))
    _save(folder, "truthUnits.clusterIds.npy", np.concatenate(truth["clusterIds"]).astype(np.int64))
