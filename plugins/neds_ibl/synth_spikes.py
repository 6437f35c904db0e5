"""Simulated Neuropixels 1.0 probes: channels in real Allen CCF regions, units, spikes and ground truth.

Each unit is an inhomogeneous Poisson process whose rate is piecewise constant on the task's
grid (synth_task.DT):

    rate_u(t) = min(g_u · exp(w_u · x(t)), RATE_CAP),   g_u = baseline_u / mean_t exp(w_u · x(t))

where x are the task covariates (synth_task.COVARIATES: the contralateral stimulus as a fast
transient and as a sustained response, signed choice and unsigned movement ramps around
movement onset, the block prior, wheel speed, whisking, three shared latents) and w_u is drawn
around the tuning FAMILY of the unit's (Beryl) region. `g_u` makes the baseline the unit's
session-mean rate (before the rarely reached cap).

Families (FAMILIES; mean weights in log-rate per covariate unit, and a median baseline) are
fixed per region — seeded by the region's name, never by the session — so all sessions share one
structure and differ only in their neurons and behaviour, which is what lets multi-session
pretraining help a new session. They differ in what drives each region and so in its time
course within the trial:

    VISa    stimulus transient, plus choice (anterior visual cortex sits in posterior parietal
            cortex, where decision signals are), fast latent
    VISam   stimulus transient and sustained, strongly running-modulated (wheel), no choice
    LGd     short-latency transient and a strong sustained response (visual thalamus), high rate
    LP      sustained visual response, movement ramp, running and whisking (pulvinar)
    PO      movement ramp before and during the turn, choice, whisking (no stimulus)
    VPM     whisking (the whisker thalamus), high rate
    CA1/CA3/DG  slow: the mid and slow latents, running (theta), a weak block prior; low rates
            (DG lowest); flat within the trial
    root    weak everything

The block prior modulates log-rates by at most ~0.15 (hippocampus; 0.1 or less in cortex and
thalamus, with mixed signs), less than the trial-to-trial variability that the slow latent
(τ = 10 s) and Poisson noise give, so the block is only weakly decodable from one trial (mostly
through the choice and the stimulus side it biases). Choice is carried by a subset of regions
(VISa, PO, LP; barely CA1, VPM) with mixed preferences (SIGN_FLIP 0.5). Within a region,
weights spread multiplicatively (lognormal, σ = WEIGHT_SPREAD) plus a little additive noise,
and some signs flip (SIGN_FLIP), small enough that a neuron's region is predictable from its
tuning (tests/test_synth_calibration.py checks it). The latents' loadings are part of the
families, so the pattern of shared dynamics across regions is the same in every session (each
session draws its own latent trajectory).

Exactness: with a piecewise-constant rate the cumulative intensity Λ(t) is piecewise linear, so
 - the ground truth (expected count in any interval) is Λ(b) − Λ(a), read off exactly at any
   edge, aligned to the grid or not;
 - spikes are sampled exactly by time rescaling: a unit-rate Poisson process on [0, Λ(T)]
   mapped through Λ⁻¹ (linear interpolation).

Behaviour-only oracle (`behaviour_truth`): the expected count of each unit in each bin given
only what a model is shown — wheel, whisking, choice and block (OBSERVED_COVARIATES are
functions of these) — with the stimulus and the latents marginalised:

    E[rate_u(t) | behaviour] = g_u · exp(w_obs · x_obs(t)) · exp(½ Σ_k w_k²)
                               · Σ_j P(j | choice, block) · exp(v_j · Σ_c w_c k_c(t − stimOn))

 - latents: each is N(0, 1) at every step and independent of the task, so
   E[exp(Σ_k w_k z_k)] = exp(½ Σ_k w_k²) exactly (independent latents);
 - stimulus: a finite sum over the 10 (side, contrast) hypotheses j, v_j = √(right contrast),
   with their exact posterior given choice and block (synth_task.stimulus_posterior; nothing
   else shown depends on the stimulus). Trial stimulus supports never overlap, so each trial
   uses its own posterior;
 - RATE_CAP: where it could bind, the uncapped lognormal mean of each hypothesis is replaced by
   the closed form E[min(B e^{sZ}, cap)] (`capped_lognormal_mean`, s² = Σ_k w_k²).
Approximations, all small: (1) the latents are standardised over the session (so that their
realisation does not move a neuron's session-mean rate, which a model could learn from the
training trials but no behaviour can predict); a step's latent is then N(0, 1) only up to
O(τ / session length), ~1 % for the slow one, and a neuron's mean over the trial windows still
differs from the oracle's by the realisation there (a few %, rarely 10–15 %); (2) the cap is treated exactly only where it could
change the mean by more than ~2e-4 of it; (3) the observed covariates are the simulator's
noiseless behaviour on its 5 ms grid, including the tail of the previous trial's movement ramp,
where a model sees filtered 20 ms bins of a noisy camera and wheel encoder inside the window
only: the behaviour oracle is a (slightly optimistic) ceiling for models that see behaviour.
"""

from __future__ import annotations

import uuid
import zlib

import attrs
import numpy as np

from neds_ibl.synth_task import COVARIATES, DT, LATENT_COVARIATES, OBSERVED_COVARIATES, STIMULUS_COVARIATES, Task

N_CHANNELS = 384
SITE_PITCH_UM = 20.0  # vertical distance between rows of two sites
SITE_X_UM = np.array([43.0, 11.0, 59.0, 27.0])  # NP1.0 checkerboard, repeating every two rows
RATE_CAP = 400.0  # Hz: refractoriness bounds what exp(w · x) may ask for (rarely reached)
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

# Each Beryl region's family: mean weights (log-rate per covariate unit) on COVARIATES =
#   (stimulus, stimulus_sustained, choice, movement, block, wheel, whisker, latent_fast, latent_mid, latent_slow)
# and the median baseline rate (Hz). See the module docstring for what each region is.
FAMILIES = {
    #         stim  sust  chc   move  blk   wheel whisk lfast lmid  lslow   Hz
    "VISa":  ((0.90, 0.15, 0.18, 0.15, 0.12, 0.25, 0.05, 0.35, 0.10, 0.30), 7.0),
    "VISam": ((1.10, 0.40, 0.00, 0.05, 0.06, 0.55, 0.10, 0.25, 0.20, 0.30), 6.0),
    "LGd":   ((0.70, 0.90, 0.00, 0.00, 0.02, 0.25, 0.00, 0.10, 0.10, 0.20), 14.0),
    "LP":    ((0.20, 0.55, 0.10, 0.45, 0.10, 0.50, 0.40, 0.15, 0.25, 0.30), 11.0),
    "PO":    ((0.00, 0.00, 0.22, 1.00, 0.06, 0.40, 0.70, 0.20, 0.15, 0.25), 12.0),
    "VPM":   ((0.00, 0.00, 0.03, 0.20, 0.02, 0.20, 1.30, 0.30, 0.05, 0.20), 16.0),
    "CA1":   ((0.00, 0.00, 0.05, 0.00, 0.18, 0.35, 0.00, 0.05, 0.45, 0.45), 4.0),
    "CA3":   ((0.00, 0.00, 0.03, 0.00, 0.18, 0.25, 0.00, 0.05, 0.60, 0.35), 5.0),
    "DG":    ((0.00, 0.00, 0.00, 0.00, 0.18, 0.25, 0.10, 0.00, 0.25, 0.60), 3.0),
    "root":  ((0.10, 0.05, 0.03, 0.10, 0.03, 0.15, 0.10, 0.20, 0.10, 0.20), 5.0),
}
# Chance that a unit's weight has the opposite sign to its family's: mixed preferences for choice,
# block and the latents; a few suppressed-by-stimulus or -movement units.
SIGN_FLIP = (0.1, 0.1, 0.5, 0.1, 0.5, 0.1, 0.05, 0.2, 0.2, 0.2)
WEIGHT_SPREAD = 0.3  # within a region: w = sign · family · exp(N(0, WEIGHT_SPREAD)) + N(0, WEIGHT_NOISE)
WEIGHT_NOISE = 0.03
BASELINE_SPREAD = 0.7  # lognormal σ of a unit's baseline around its region's median
assert all(len(w) == len(COVARIATES) for w, _ in FAMILIES.values()) and len(SIGN_FLIP) == len(COVARIATES)


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
    behaviour_truth: np.ndarray  # the same given the shown behaviour only (behaviour_truth)


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
    """A region's mean weights: the table entry with a small (±10 %) twist seeded by the region's name only."""
    twist = np.random.default_rng(zlib.crc32(beryl.encode())).normal(0.0, 0.1, len(COVARIATES))
    return np.asarray(FAMILIES[beryl][0]) * np.exp(twist)


def draw_units(rng: np.random.Generator, n: int, channels: dict, acronyms: np.ndarray, regions) -> Units:
    in_brain = np.flatnonzero(channels["brainLocationIds_ccf_2017"] != 0)
    channel = rng.choice(in_brain, n)
    beryl = regions.acronym2acronym(acronyms[channel], mapping="Beryl").astype(str)
    names, region_of_unit = np.unique(beryl, return_inverse=True)
    means = np.stack([family_mean(b) for b in names])[region_of_unit]
    signs = np.where(rng.random(means.shape) < np.asarray(SIGN_FLIP), -1.0, 1.0)
    weights = signs * means * np.exp(rng.normal(0.0, WEIGHT_SPREAD, means.shape)) + rng.normal(0.0, WEIGHT_NOISE, means.shape)
    # Lognormal baselines around the region's median (2–16 Hz): ~30 % of units below 5 Hz, a few above 40 Hz.
    median = np.array([FAMILIES[b][1] for b in names])[region_of_unit]
    baseline = np.clip(median * np.exp(rng.normal(0.0, BASELINE_SPREAD, n)), 0.3, 80.0)
    depth = channels["localCoordinates"][channel, 1] + rng.uniform(-10.0, 10.0, n)
    amp = np.exp(rng.normal(np.log(90e-6), 0.45, n))
    return Units(channel=channel, depth=depth, beryl=beryl, baseline=baseline, weights=weights.astype(np.float32), amp=amp)


# ------------------------------------------------------------------------------------------------ rate


def _rates_and_gains(units: Units, covariates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit_rates, g_u): the rates and each unit's gain g_u = baseline / mean_t exp(w · x(t))."""
    rate = units.weights @ covariates
    np.exp(rate, out=rate)  # in place, float32: these full-session arrays are the bulk of the cost
    gain = units.baseline / rate.mean(axis=1, dtype=np.float64)
    rate *= gain.astype(np.float32)[:, None]
    return np.minimum(rate, RATE_CAP, out=rate), gain


def unit_rates(units: Units, covariates: np.ndarray) -> np.ndarray:
    """(n_units, n_steps) float32 firing rates (Hz) on the grid: THE rate spikes are sampled from."""
    return _rates_and_gains(units, covariates)[0]


_OBSERVED = [COVARIATES.index(c) for c in OBSERVED_COVARIATES]
_STIMULUS = [COVARIATES.index(c) for c in STIMULUS_COVARIATES]
_LATENT = [COVARIATES.index(c) for c in LATENT_COVARIATES]
assert sorted(_OBSERVED + _STIMULUS + _LATENT) == list(range(len(COVARIATES)))


def capped_lognormal_mean(b: np.ndarray, s: np.ndarray, cap: float) -> np.ndarray:
    """E[min(b · exp(s Z), cap)] for Z ~ N(0, 1), elementwise (b > 0, s ≥ 0): the cap on a lognormal rate."""
    from scipy.special import ndtr

    s = np.maximum(s, 1e-9)
    log_ratio = np.log(cap / b)
    return b * np.exp(0.5 * s * s) * ndtr((log_ratio - s * s) / s) + cap * ndtr(-log_ratio / s)


def behaviour_truth(units: Units, gains: np.ndarray, task: Task, edges: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """(len(trials), bins, n_units) float32: E[count | shown behaviour] in each bin (module docstring).

    `edges` (len(trials), bins + 1) are the finite bin edges of the trial rows `trials`; `gains`
    the units' g_u. Works on each trial's window of the grid only: the observed rate times
    exp(½ Σ w_latent²), times the stimulus mixture on the trial's stimulus support, integrated
    exactly over the bins (the rate is piecewise constant on the grid, as the true one). Where
    RATE_CAP could bind, each hypothesis's capped lognormal mean replaces the uncapped one.
    """
    n_steps, n_trials = task.n_steps, len(trials)
    first = np.floor(edges[:, 0] / DT).astype(np.int64)
    width = int(np.floor((edges[:, -1] - edges[:, 0]).max() / DT)) + 2  # every step a bin touches
    steps = np.minimum(first[:, None] + np.arange(width)[None, :], n_steps - 1)  # (K, W)
    observed = task.covariates[_OBSERVED][:, steps].reshape(len(_OBSERVED), -1)  # (n_obs, K·W)
    hidden = task.stimulus
    support = hidden.kernels.shape[1]
    posterior = hidden.posterior[trials].astype(np.float32)  # (K, J)
    values, which = np.unique(hidden.values, return_inverse=True)  # the distinct √ contrasts: 0 for every left stimulus
    by_value = np.stack([hidden.posterior[trials][:, which == v].sum(axis=1) for v in range(values.size)], axis=1)
    offset = hidden.step[trials] - first  # where each trial's stimulus support starts in its window
    local = np.clip(np.floor(edges / DT).astype(np.int64) - first[:, None], 0, width - 1)  # (K, bins + 1)
    into_step = (edges - (first[:, None] + local) * DT).astype(np.float32)  # time from the step's start
    row = np.arange(n_trials)[:, None]
    out = np.empty((n_trials, edges.shape[1] - 1, len(units)), dtype=np.float32)
    chunk = max(1, _CHUNK_ELEMENTS // 4 // (n_trials * width))  # small chunks: the window arrays stay in cache
    for lo in range(0, len(units), chunk):
        idx = slice(lo, min(lo + chunk, len(units)))
        w = units.weights[idx]
        spread = np.sqrt(np.sum(w[:, _LATENT].astype(np.float64) ** 2, axis=1))  # SD of the latent drive w · z
        log_base = (w[:, _OBSERVED] @ observed).reshape(-1, n_trials, width)
        log_base += np.log(gains[idx]).astype(np.float32)[:, None, None]  # log g + w_obs · x_obs
        rate = np.exp(log_base + (0.5 * spread**2).astype(np.float32)[:, None, None])  # (n, K, W)
        profile = w[:, _STIMULUS] @ hidden.kernels  # (n, L): Σ_c w_c k_c(l)
        mixture = np.exp(hidden.values.astype(np.float32)[None, :, None] * profile[:, None, :])  # (n, J, L)
        by_trial = np.matmul(posterior[None], mixture)  # (n, K, L): E[exp(stimulus drive)] per trial and lag
        for o in np.unique(offset):  # supports start at the same step of (nearly) every window
            on = slice(None) if (offset == o).all() else offset == o
            a, b = max(o, 0), min(o + support, width)
            if a < b:
                rate[:, on, a:b] *= by_trial[:, on, a - o : b - o]
        # Where the cap could change the mean by more than ~2e-4 of it (the uncapped lognormal's mass
        # above the cap: Φ(−3.5) at most elsewhere), redo it exactly, stimulus value by value.
        reach = np.maximum(profile.max(axis=1), 0.0) + spread**2 + 3.5 * spread
        near = np.nonzero(log_base + reach.astype(np.float32)[:, None, None] > np.log(RATE_CAP))
        if near[0].size:
            u, k, m = near
            lag = m - offset[k]
            inside = (lag >= 0) & (lag < support)
            drive = np.where(inside, profile[u, np.clip(lag, 0, support - 1)], 0.0)  # Σ_c w_c k_c at this step
            b = np.exp(log_base[near].astype(np.float64)[:, None] + values[None, :] * drive[:, None])  # (M, V)
            expected = capped_lognormal_mean(b, spread[u][:, None], RATE_CAP)
            rate[near] = np.sum(by_value[k] * expected, axis=1)
        # Λ within each window; float32 is plenty: a window's Λ is at most RATE_CAP · 2 s.
        cum = np.zeros(rate.shape[:2] + (width + 1,), dtype=np.float32)
        np.cumsum(rate, axis=2, out=cum[:, :, 1:])
        at = DT * cum[:, row, local] + rate[:, row, local] * into_step[None]
        out[:, :, idx] = np.diff(at, axis=2).transpose(1, 2, 0)
    return out


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
    gains = np.empty(n_units)
    times, clusters = [], []
    chunk = max(1, _CHUNK_ELEMENTS // task.n_steps)
    for lo in range(0, n_units, chunk):  # bounded memory: a few units over the whole session at a time
        idx = np.arange(lo, min(lo + chunk, n_units))
        rate, gains[idx] = _rates_and_gains(units.subset(idx), task.covariates)
        cum = _cumulative(rate)
        at_edges = _integral_at(cum, rate, flat_edges).reshape(idx.size, valid.sum(), edges.shape[1])
        truth[np.ix_(valid, np.arange(edges.shape[1] - 1), idx)] = np.diff(at_edges, axis=2).transpose(1, 2, 0)
        for row, unit in enumerate(idx):
            t = _spike_times(rng, cum[row])
            times.append(t)
            clusters.append(np.full(t.size, unit, dtype=np.int32))
    shown = np.full_like(truth, np.nan)
    if valid.any():
        shown[valid] = behaviour_truth(units, gains, task, edges[valid], np.flatnonzero(valid))
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
        behaviour_truth=shown,
    )
