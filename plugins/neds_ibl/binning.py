"""Spike binning, the neuron rate filter and NEDS's trial filter — vectorised over a whole session.

Bins are left-closed and right-open: bin k of a trial covers [t0 + k·w, t0 + (k+1)·w) with
t0 = the trial's window start, so a spike exactly at the window end is not counted. (The
reference's per-trial `bincount2D` returned an extra column for it.) Windows of consecutive
trials may overlap; a spike in both windows counts in both trials.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# Expand at most this many (trial, spike) pairs at once; bounds memory on long sessions
# (8 bytes × several arrays per pair).
_MAX_PAIRS_PER_CHUNK = 20_000_000


def bin_spikes(
    spike_times: np.ndarray,
    spike_clusters: np.ndarray,
    starts: np.ndarray,
    n_bins: int = 100,
    bin_size: float = 0.02,
    n_clusters: int | None = None,
) -> np.ndarray:
    """Spike counts per (trial, bin, cluster), as the smallest unsigned dtype that holds them.

    spike_times must be sorted ascending (ALF spikes.times are). Cluster ids are 0..n_clusters-1.
    """
    times = np.asarray(spike_times, dtype=np.float64)
    clusters = np.asarray(spike_clusters, dtype=np.int64)
    starts = np.asarray(starts, dtype=np.float64)
    if times.shape != clusters.shape:
        raise ValueError(f"spike_times {times.shape} and spike_clusters {clusters.shape} differ in length")
    if times.size > 1 and np.any(times[1:] < times[:-1]):
        raise ValueError("spike_times must be sorted ascending")
    if not np.all(np.isfinite(starts)):
        raise ValueError("trial starts must be finite (drop trials without an alignment time first)")
    if n_clusters is None:
        n_clusters = int(clusters.max()) + 1 if clusters.size else 0
    edges_in_bins = np.arange(n_bins + 1) * bin_size

    counts = np.zeros(len(starts) * n_bins * n_clusters, dtype=np.int64)
    # Each trial's spikes are one contiguous run of the sorted times.
    lo = np.searchsorted(times, starts, side="left")
    hi = np.searchsorted(times, starts + edges_in_bins[-1], side="left")
    for trial_slice in _chunks(hi - lo):
        pairs_lo, pairs_hi = lo[trial_slice], hi[trial_slice]
        sizes = pairs_hi - pairs_lo
        trial = np.repeat(np.arange(trial_slice.start, trial_slice.stop), sizes)
        # Indices of the spikes of every trial in the chunk, without a loop: a running index
        # that jumps to each trial's first spike.
        spike = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes) + np.repeat(pairs_lo, sizes)
        t, t0 = times[spike], starts[trial]
        b = np.floor((t - t0) / bin_size).astype(np.int64)
        # Floating division can land one bin off right at an edge: settle it against the very
        # edge values the window bounds use (t0 + k·w), so a spike's bin agrees with them.
        b -= t < t0 + edges_in_bins[np.clip(b, 0, n_bins)]
        b += t >= t0 + edges_in_bins[np.clip(b + 1, 0, n_bins)]
        inside = (b >= 0) & (b < n_bins)
        flat = (trial[inside] * n_bins + b[inside]) * n_clusters + clusters[spike[inside]]
        counts += np.bincount(flat, minlength=counts.size)
    return narrow_counts(counts.reshape(len(starts), n_bins, n_clusters))


def _chunks(sizes: np.ndarray) -> list[slice]:
    """Contiguous trial slices of at most about _MAX_PAIRS_PER_CHUNK spikes each."""
    ends = np.cumsum(sizes)
    cuts = np.searchsorted(ends, np.arange(_MAX_PAIRS_PER_CHUNK, ends[-1] if ends.size else 0, _MAX_PAIRS_PER_CHUNK), side="right")
    bounds = np.unique(np.concatenate([[0], cuts, [len(sizes)]]))
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])] or [slice(0, 0)]


def narrow_counts(counts: np.ndarray) -> np.ndarray:
    """Counts as uint8, uint16 or uint32: the smallest unsigned type that holds the maximum."""
    top = int(counts.max()) if counts.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype, copy=False)
    return counts.astype(np.uint64)


def rate_filter(counts: np.ndarray, threshold_hz: float, window_s: float) -> np.ndarray:
    """Neurons whose mean rate over the trials passed in exceeds the threshold (NEDS: > 5 Hz).

    NEDS computes the rate over all trials of the session, before the trial filter; pass those.
    """
    rates = counts.sum(axis=1, dtype=np.int64).mean(axis=0) / window_s
    return rates > threshold_hz


# NEDS's trial exclusion rules (neds-facts.md §1.3), each counted separately in the report.
_REQUIRED = ("stimOn_times", "choice", "feedback_times", "probabilityLeft", "firstMovement_times", "feedbackType")


def trial_filter(trials: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """(kept-trial mask, number of trials hit by each exclusion reason)."""
    with np.errstate(invalid="ignore"):
        rt = trials["firstMovement_times"] - trials["stimOn_times"]
        response = trials["feedback_times"] - trials["goCue_times"]
        rules = {f"nan_{name}": ~np.isfinite(np.asarray(trials[name], dtype=float)) for name in _REQUIRED}
        rules["reaction_time_negative"] = rt < 0
        rules["reaction_time_over_10s"] = rt > 10
        rules["response_over_10s"] = response > 10
        rules["no_go"] = np.asarray(trials["choice"]) == 0
    excluded = np.logical_or.reduce(list(rules.values()))
    reasons = {name: int(hit.sum()) for name, hit in rules.items()}
    return ~excluded, reasons
