"""Simulated Neuropixels probes: channels in real Allen CCF regions, units, spikes and truth.

Each unit fires as an inhomogeneous Poisson process whose rate is piecewise constant on the
task's fine grid: rate = baseline · exp(w · covariates), where w is drawn around its region's
tuning family. The families are fixed per region (not per session), so every session shares the
same structure with different neurons — what lets multi-session pretraining help a new session.
The ground truth is the exact integral of that rate over each NEDS bin.
"""

from __future__ import annotations

import uuid
import zlib

import attrs
import numpy as np

from neds_ibl.synth_task import COVARIATES, DT, Task

N_CHANNELS = 384
PROBE_LENGTH_UM = 3840.0

# Regions along each probe, tip (deep) first, with the depth span (µm) each occupies. Layer-level
# acronyms on purpose: the Beryl mapping must collapse VISa2/3, VISa4, ... into VISa.
PROBE_LAYOUTS = (
    (("PO", 600), ("LP", 700), ("DG-mo", 250), ("DG-sg", 150), ("CA1", 550), ("VISa6a", 400), ("VISa5", 450), ("VISa4", 300), ("VISa2/3", 440)),
    (("LGd", 700), ("PO", 500), ("CA3", 600), ("CA1", 500), ("VISam6a", 500), ("VISam5", 550), ("VISam2/3", 490)),
)

# Mean tuning (weights on COVARIATES: stimulus, choice, block, wheel, whisker, latent) of each
# Beryl region's family.
FAMILIES = {
    "VISa": (0.6, 0.1, 0.0, 0.1, 0.0, 0.2),
    "VISam": (0.5, 0.2, 0.1, 0.0, 0.1, 0.2),
    "CA1": (0.0, 0.1, 0.3, 0.1, 0.0, 0.4),
    "CA3": (0.0, 0.0, 0.3, 0.0, 0.1, 0.4),
    "DG": (0.0, 0.0, 0.2, 0.2, 0.0, 0.4),
    "LP": (0.2, 0.3, 0.0, 0.3, 0.3, 0.1),
    "PO": (0.0, 0.2, 0.0, 0.4, 0.4, 0.1),
    "LGd": (0.6, 0.0, 0.0, 0.0, 0.0, 0.1),
}
assert all(len(w) == len(COVARIATES) for w in FAMILIES.values())

_UNITS_PER_CHUNK = 48  # units simulated together: bounds memory to grid × chunk floats


@attrs.frozen
class Probe:
    name: str
    channels: dict  # ALF channels.* arrays
    clusters: dict  # ALF clusters.* arrays and the metrics table columns
    spikes: dict  # ALF spikes.* arrays
    uuids: np.ndarray
    truth_rates: np.ndarray  # (trials, n_bins, units) expected counts per NEDS bin


def _channels(layout, regions) -> dict:
    depth = (np.arange(N_CHANNELS) // 2) * 20.0 + 20.0
    lateral = np.tile([11.0, 43.0], N_CHANNELS // 2) + np.repeat(np.arange(N_CHANNELS // 2) % 2 * 16.0, 2)
    bounds = np.cumsum([span for _, span in layout])
    region_of = np.clip(np.searchsorted(bounds, depth, side="right"), 0, len(layout) - 1)
    acronyms = np.array([acr for acr, _ in layout])[region_of]
    return {
        "localCoordinates": np.stack([lateral, depth], axis=1),
        "rawInd": np.arange(N_CHANNELS),
        "mlapdv": np.stack([np.full(N_CHANNELS, -2200.0), np.full(N_CHANNELS, -2000.0), -PROBE_LENGTH_UM + depth], axis=1),
        "brainLocationIds_ccf_2017": regions.acronym2id(acronyms).astype(np.int64),
        "_acronym": acronyms,
    }


def _family_weights(beryl: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unit weights around its region family's mean; the family itself is fixed per region."""
    means = np.array([FAMILIES[b] for b in beryl])
    # A per-region random direction, seeded by the region name only, so it is the same in every session.
    region_twist = np.array([np.random.default_rng(zlib.crc32(b.encode())).normal(0, 0.15, len(COVARIATES)) for b in np.unique(beryl)])
    twist = region_twist[np.searchsorted(np.unique(beryl), beryl)]
    return means + twist + rng.normal(0, 0.12, means.shape)


def _cumulative(rate_chunk: np.ndarray) -> np.ndarray:
    """Integral of the rate up to each grid point (float64: long sums of small numbers)."""
    cum = np.zeros((rate_chunk.shape[0] + 1, rate_chunk.shape[1]))
    np.cumsum(rate_chunk * DT, axis=0, out=cum[1:])
    return cum


def simulate_probe(
    rng: np.random.Generator, task: Task, name: str, layout, n_units: int, regions, bin_edges: np.ndarray
) -> Probe:
    """One probe's units and spikes. `bin_edges` (trials, n_bins + 1) are the NEDS bin edges."""
    channels = _channels(layout, regions)
    channel = np.sort(rng.integers(0, N_CHANNELS, n_units))
    acronyms = channels.pop("_acronym")[channel]
    beryl = regions.acronym2acronym(acronyms, mapping="Beryl")
    weights = _family_weights(beryl, rng).astype(np.float32)
    # Baselines spanning real rates (session median ~5 Hz; task epochs run higher).
    baseline = np.clip(np.exp(rng.normal(np.log(6.5), 1.0, n_units)), 0.3, 80.0)

    grid = task.grid
    valid = np.isfinite(bin_edges).all(axis=1)
    truth = np.full(bin_edges.shape[:1] + (bin_edges.shape[1] - 1, n_units), np.nan, dtype=np.float32)
    times, clusters = [], []
    for lo in range(0, n_units, _UNITS_PER_CHUNK):  # chunks of units, not a loop over spikes
        units = np.arange(lo, min(lo + _UNITS_PER_CHUNK, n_units))
        modulation = np.exp(task.covariates @ weights[units].T)
        # Normalise so each unit's session-average rate is its baseline (tuning shapes, not inflates).
        rate = np.minimum(baseline[units] * modulation / modulation.mean(axis=0), 200.0)
        cum = _cumulative(rate)
        # Exact expected count per bin: the cumulative integral is linear inside a grid step.
        edges = bin_edges[valid]
        step = np.clip((edges / DT).astype(np.int64), 0, len(grid) - 1)
        at_edges = cum[step] + rate[step] * (edges - grid[step])[..., None]
        truth[np.ix_(np.flatnonzero(valid), np.arange(edges.shape[1] - 1), units)] = np.diff(at_edges, axis=1)
        counts = rng.poisson(rate * DT)
        step_idx, unit_idx = np.nonzero(counts)
        n_spk = counts[step_idx, unit_idx]
        times.append(np.repeat(grid[step_idx], n_spk) + rng.uniform(0, DT, n_spk.sum()))
        clusters.append(np.repeat(units[unit_idx], n_spk))
    all_times = np.concatenate(times)
    order = np.argsort(all_times, kind="stable")
    spike_clusters = np.concatenate(clusters)[order]
    unit_depth = channels["localCoordinates"][channel, 1]
    amps = np.exp(rng.normal(np.log(80e-6), 0.4, n_units))
    n_spikes = np.bincount(spike_clusters, minlength=n_units)
    duration = grid[-1] - grid[0]
    return Probe(
        name=name,
        channels=channels,
        clusters={
            "channels": channel.astype(np.int64),
            "depths": unit_depth,
            "amps": amps,
            "metrics": {
                "cluster_id": np.arange(n_units),
                "firing_rate": n_spikes / duration,
                "amp_median": amps,
                "label": rng.choice([0.0, 1 / 3, 2 / 3, 1.0], n_units, p=[0.2, 0.2, 0.3, 0.3]),
                "contamination": rng.uniform(0, 0.2, n_units),
            },
        },
        spikes={
            "times": all_times[order],
            "clusters": spike_clusters,
            "amps": amps[spike_clusters] * np.exp(rng.normal(0, 0.1, spike_clusters.size)),
            "depths": unit_depth[spike_clusters] + rng.normal(0, 5.0, spike_clusters.size),
        },
        uuids=np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_units)]),
        truth_rates=truth,
    )
