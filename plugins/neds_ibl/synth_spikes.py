"""Simulated Neuropixels 1.0 probes: channels in real Allen CCF regions, units, spikes and ground truth.

Each unit is an inhomogeneous Poisson process whose rate is piecewise constant on the task's
grid (synth_task.DT):

    rate_u(t) = min(g_u · exp(w_u · x(t)), RATE_CAP),   g_u = baseline_u / mean_t exp(w_u · x(t))

where x are the task covariates and w_u is drawn around the tuning FAMILY of the unit's (Beryl)
region. Families are fixed per region — seeded by the region's name, never by the session — so
all sessions share one structure and differ only in their neurons, which is what lets
multi-session pretraining help a new session. `g_u` makes the baseline the unit's session-mean
rate (before the rarely reached cap).

Exactness: with a piecewise-constant rate the cumulative intensity Λ(t) is piecewise linear, so
 - the ground truth (expected count in any interval) is Λ(b) − Λ(a), read off exactly at any
   edge, aligned to the grid or not;
 - spikes are sampled exactly by time rescaling: a unit-rate Poisson process on [0, Λ(T)]
   mapped through Λ⁻¹ (linear interpolation).
"""

from __future__ import annotations

import uuid
import zlib

import attrs
import numpy as np

from neds_ibl.synth_task import COVARIATES, DT, Task

N_CHANNELS = 384
SITE_PITCH_UM = 20.0  # vertical distance between rows of two sites
SITE_X_UM = np.array([43.0, 11.0, 59.0, 27.0])  # NP1.0 checkerboard, repeating every two rows
RATE_CAP = 250.0  # Hz: refractoriness bounds what exp(w · x) may ask for
_CHUNK_ELEMENTS = 8_000_000  # units × grid steps simulated at once (~64 MB per float64 array)


@attrs.frozen
class Insertion:
    """A probe track: regions crossed from the tip up, and where it enters the brain."""

    layout: tuple  # ((Allen acronym, span in µm), ...) tip first; spans sum to the probe length
    entry_mlap: tuple[float, float]  # µm from bregma at the brain surface
    depth_um: float  # tip depth along the track below the surface
    tilt_deg: float  # from vertical, tilting towards −ML (lateral for a left-hemisphere probe)


# Track length 3840 µm = 384 sites / 2 per row × 20 µm. Layer-level acronyms on purpose: the Beryl
# mapping must collapse VISa2/3, VISa5, ... into VISa and DG-mo, DG-sg into DG; 'alv' (alveus, a
# fibre tract) maps to 'root'; 'void' sites sit above the brain and carry no units.
INSERTIONS = (
    Insertion(  # IBL's repeated site: VISa → CA1 → DG → LP → PO
        layout=(
            ("PO", 620), ("LP", 680), ("DG-po", 120), ("DG-sg", 100), ("DG-mo", 200), ("CA1", 460), ("alv", 60),
            ("VISa6b", 40), ("VISa6a", 300), ("VISa5", 360), ("VISa4", 140), ("VISa2/3", 380), ("VISa1", 100), ("void", 280),
        ),
        entry_mlap=(-2243.0, -2000.0),
        depth_um=3560.0,
        tilt_deg=15.0,
    ),
    Insertion(  # a second, more posterior-medial track: VISam → CA3 → DG → LGd → PO → VPM
        layout=(
            ("VPM", 560), ("PO", 520), ("LGd", 440), ("DG-po", 100), ("DG-sg", 100), ("DG-mo", 180), ("CA3", 240),
            ("CA1", 400), ("alv", 60), ("VISam6b", 40), ("VISam6a", 300), ("VISam5", 360), ("VISam4", 140),
            ("VISam2/3", 240), ("VISam1", 100), ("void", 60),
        ),
        entry_mlap=(-1500.0, -2700.0),
        depth_um=3780.0,
        tilt_deg=10.0,
    ),
)

# Mean tuning of each Beryl region's family, in log-rate per covariate unit, on COVARIATES =
# (stimulus, choice, block, wheel, whisker, latent): visual cortex and LGd stimulus-driven,
# thalamus (LP, PO, VPM) movement/whisker, hippocampus latent/block.
FAMILIES = {
    "VISa": (1.0, 0.25, 0.1, 0.2, 0.1, 0.3),
    "VISam": (0.9, 0.3, 0.1, 0.3, 0.2, 0.3),
    "LGd": (1.2, 0.0, 0.0, 0.2, 0.1, 0.2),
    "CA1": (0.1, 0.2, 0.45, 0.4, 0.1, 0.6),
    "CA3": (0.0, 0.1, 0.4, 0.3, 0.1, 0.6),
    "DG": (0.0, 0.1, 0.35, 0.5, 0.2, 0.5),
    "LP": (0.5, 0.4, 0.1, 0.6, 0.6, 0.2),
    "PO": (0.1, 0.5, 0.0, 0.7, 0.9, 0.2),
    "VPM": (0.0, 0.3, 0.0, 0.6, 1.0, 0.2),
    "root": (0.1, 0.1, 0.1, 0.2, 0.1, 0.2),
}
# Chance that a unit's weight has the opposite sign to its family's: mixed preferences for side,
# choice, block and the latent; a (magnitude) speed or whisking drive keeps its sign.
SIGN_FLIP = (0.15, 0.35, 0.35, 0.0, 0.0, 0.4)
assert all(len(w) == len(COVARIATES) for w in FAMILIES.values()) and len(SIGN_FLIP) == len(COVARIATES)


@attrs.frozen
class Units:
    """One probe's units (kilosort clusters); everything the rate depends on."""

    channel: np.ndarray  # int, site index on the probe
    depth: np.ndarray  # µm from the tip
    beryl: np.ndarray  # str, Beryl acronym of the unit's site
    baseline: np.ndarray  # Hz, the unit's session-mean rate
    weights: np.ndarray  # (n, len(COVARIATES)) float32
    amp: np.ndarray  # V, median spike amplitude

    def __len__(self) -> int:
        return self.channel.size

    def subset(self, idx) -> Units:
        return Units(**{k: v[idx] for k, v in attrs.asdict(self, recurse=False).items()})


@attrs.frozen
class Probe:
    name: str
    channels: dict  # ALF channels.* arrays
    units: Units
    clusters: dict  # ALF clusters.* arrays (metrics: a dict of columns)
    spikes: dict  # ALF spikes.* arrays
    uuids: np.ndarray  # str, one per cluster
    truth: np.ndarray  # (trials, bins, units) float32 expected counts; NaN rows where edges are NaN


# -------------------------------------------------------------------------------------------- geometry


def probe_channels(index: int, regions) -> tuple[dict, np.ndarray]:
    """The ALF channels object of probe `index` and the Allen acronym of each site."""
    insertion = INSERTIONS[index]
    row = np.arange(N_CHANNELS) // 2
    axial = SITE_PITCH_UM * (row + 1)  # µm from the tip; the first row sits 20 µm up
    lateral = SITE_X_UM[np.arange(N_CHANNELS) % 4]
    bounds = np.cumsum([span for _, span in insertion.layout])
    region = np.minimum(np.searchsorted(bounds, axial, side="left"), len(insertion.layout) - 1)
    acronyms = np.array([acr for acr, _ in insertion.layout])[region]
    # Straight track entering at (ml, ap, 0), tilted in the ML–DV plane; DV negative below the surface.
    along = insertion.depth_um - axial
    tilt = np.deg2rad(insertion.tilt_deg)
    ml, ap = insertion.entry_mlap
    mlapdv = np.stack([ml - along * np.sin(tilt), np.full(N_CHANNELS, ap), -along * np.cos(tilt)], axis=1)
    channels = {
        "localCoordinates": np.stack([lateral, axial], axis=1),
        "rawInd": np.arange(N_CHANNELS),
        "mlapdv": mlapdv,
        "brainLocationIds_ccf_2017": regions.acronym2id(acronyms).astype(np.int64),
    }
    return channels, acronyms


def family_mean(beryl: str) -> np.ndarray:
    """A region's mean weights: the table entry plus a small twist seeded by the region's name only."""
    twist = np.random.default_rng(zlib.crc32(beryl.encode())).normal(0.0, 0.1, len(COVARIATES))
    return np.asarray(FAMILIES[beryl]) + twist


def draw_units(rng: np.random.Generator, n: int, channels: dict, acronyms: np.ndarray, regions) -> Units:
    in_brain = np.flatnonzero(channels["brainLocationIds_ccf_2017"] != 0)
    channel = rng.choice(in_brain, n)
    beryl = regions.acronym2acronym(acronyms[channel], mapping="Beryl").astype(str)
    names, region_of_unit = np.unique(beryl, return_inverse=True)
    means = np.stack([family_mean(b) for b in names])[region_of_unit]
    signs = np.where(rng.random(means.shape) < np.asarray(SIGN_FLIP), -1.0, 1.0)
    weights = signs * means + rng.normal(0.0, 0.2, means.shape)
    # Lognormal baselines, median 8 Hz: ~30 % of units below 5 Hz, a few above 40 Hz.
    baseline = np.clip(np.exp(rng.normal(np.log(8.0), 0.9, n)), 0.3, 80.0)
    depth = channels["localCoordinates"][channel, 1] + rng.uniform(-10.0, 10.0, n)
    amp = np.exp(rng.normal(np.log(90e-6), 0.45, n))
    return Units(channel=channel, depth=depth, beryl=beryl, baseline=baseline, weights=weights.astype(np.float32), amp=amp)


# ------------------------------------------------------------------------------------------------ rate


def unit_rates(units: Units, covariates: np.ndarray) -> np.ndarray:
    """(n_units, n_steps) float32 firing rates (Hz) on the grid: THE rate spikes are sampled from."""
    rate = units.weights @ covariates
    np.exp(rate, out=rate)  # in place, float32: these full-session arrays are the bulk of the cost
    rate *= (units.baseline / rate.mean(axis=1, dtype=np.float64)).astype(np.float32)[:, None]
    return np.minimum(rate, RATE_CAP, out=rate)


def _cumulative(rate: np.ndarray) -> np.ndarray:
    """Λ at the grid edges k·DT, k = 0..n_steps: (n_units, n_steps + 1), summed in float64."""
    cum = np.empty((rate.shape[0], rate.shape[1] + 1))
    cum[:, 0] = 0.0
    for row in range(rate.shape[0]):  # row by row: 3x faster than numpy's cumsum along axis 1
        np.cumsum(rate[row], dtype=np.float64, out=cum[row, 1:])
    cum *= DT
    return cum


def _integral_at(cum: np.ndarray, rate: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Λ at arbitrary times: linear inside the grid step that contains each time."""
    step = np.clip(np.floor(times / DT).astype(np.int64), 0, rate.shape[1] - 1)
    return cum[:, step] + rate[:, step] * (times - step * DT)


def _spike_times(rng: np.random.Generator, cum_row: np.ndarray) -> np.ndarray:
    """Exact inhomogeneous Poisson sample by time rescaling; sorted."""
    total = cum_row[-1]
    rescaled = np.sort(rng.random(rng.poisson(total))) * total
    return np.interp(rescaled, cum_row, np.arange(cum_row.size) * DT)


# ----------------------------------------------------------------------------------------------- probe


def _jitter(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standard normal float32 noise (per-spike arrays are tens of millions long)."""
    return rng.standard_normal(n, dtype=np.float32)


def _metrics(rng: np.random.Generator, units: Units, n_spikes: np.ndarray, duration: float) -> dict:
    """IBL-like single-unit metrics; `label` is IBL's: the fraction of the 3 criteria a unit passes."""
    n = len(units)
    sliding_rp = (rng.random(n) < 0.6).astype(float)  # 1 = passes the sliding refractory-period test
    noise_cutoff = np.abs(rng.normal(0.0, 6.0, n))
    label = (sliding_rp + (noise_cutoff < 5.0) + (units.amp > 50e-6)) / 3.0
    return {
        "cluster_id": np.arange(n),
        "spike_count": n_spikes,
        "firing_rate": n_spikes / duration,
        "amp_median": units.amp,
        "amp_min": units.amp * 0.6,
        "amp_max": units.amp * 1.8,
        "contamination": rng.uniform(0.0, 0.3, n),
        "slidingRP_viol": sliding_rp,
        "noise_cutoff": noise_cutoff,
        "presence_ratio": rng.uniform(0.8, 1.0, n),
        "label": label,
    }


def simulate_probe(rng: np.random.Generator, task: Task, index: int, n_units: int, regions, edges: np.ndarray) -> Probe:
    """Probe `index`'s units and spikes; `edges` (trials, bins + 1) are the truth's bin edges (NaN rows allowed)."""
    channels, acronyms = probe_channels(index, regions)
    units = draw_units(rng, n_units, channels, acronyms, regions)
    valid = np.isfinite(edges).all(axis=1)
    flat_edges = edges[valid].ravel()
    truth = np.full((edges.shape[0], edges.shape[1] - 1, n_units), np.nan, dtype=np.float32)
    times, clusters = [], []
    chunk = max(1, _CHUNK_ELEMENTS // task.n_steps)
    for lo in range(0, n_units, chunk):  # bounded memory: a few units over the whole session at a time
        idx = np.arange(lo, min(lo + chunk, n_units))
        rate = unit_rates(units.subset(idx), task.covariates)
        cum = _cumulative(rate)
        at_edges = _integral_at(cum, rate, flat_edges).reshape(idx.size, valid.sum(), edges.shape[1])
        truth[np.ix_(valid, np.arange(edges.shape[1] - 1), idx)] = np.diff(at_edges, axis=2).transpose(1, 2, 0)
        for row, unit in enumerate(idx):
            t = _spike_times(rng, cum[row])
            times.append(t)
            clusters.append(np.full(t.size, unit, dtype=np.int32))
    spike_times = np.concatenate(times)
    order = np.argsort(spike_times)  # exact ties between units have probability 0
    spike_clusters = np.concatenate(clusters)[order]
    n_spikes = np.bincount(spike_clusters, minlength=n_units)
    return Probe(
        name=f"probe{index:02d}",
        channels=channels,
        units=units,
        clusters={
            "channels": units.channel.astype(np.int64),
            "depths": units.depth,
            "amps": units.amp,
            "metrics": _metrics(rng, units, n_spikes, task.duration),
        },
        spikes={
            "times": spike_times[order],
            "clusters": spike_clusters,
            "amps": units.amp.astype(np.float32)[spike_clusters] * np.exp(0.15 * _jitter(rng, spike_clusters.size)),
            "depths": units.depth.astype(np.float32)[spike_clusters] + 4.0 * _jitter(rng, spike_clusters.size),
        },
        uuids=np.array([str(uuid.UUID(bytes=rng.bytes(16), version=4)) for _ in range(n_units)]),
        truth=truth,
    )
