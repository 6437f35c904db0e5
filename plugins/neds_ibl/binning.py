"""Spike binning, the neuron rate filter and NEDS's trial filter, vectorised over a whole session.

Bin edges (DESIGN.md, Data): bins are left-closed and right-open. Bin k of a trial with window
start t0 covers [t0 + k·w, t0 + (k+1)·w), the edge values being computed exactly so, in float64;
a spike exactly at the window end t0 + n·w is not counted. The reference's per-trial
`iblutil.numerical.bincount2D` differs in two ways: it returns an extra column for the window end
(truncated away), and it bins by floor((t − t0)/w), which puts a spike lying exactly on an inner
edge one bin early whenever that division rounds down.

Windows of consecutive trials may overlap; a spike inside both windows counts in both trials.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

# One pass handles at most about this many (trial, spike) pairs (~50 bytes of temporaries each) and
# this many output cells (8 bytes each in np.bincount). Small chunks bound memory and keep the
# temporaries in cache: on a 500-unit session, 2^19 cells (10 trials) ran 2x faster than 2^23.
_PAIRS_PER_CHUNK = 1 << 18
_CELLS_PER_CHUNK = 1 << 19

# Rounding puts (t − t0)/w below 1e-9 bins off its exact value (20 ms bins, times up to 1e5 s); a
# spike closer than this to an edge, in bins, is settled against the edge values themselves.
_EDGE_TOLERANCE = 1e-6

_UINTS = (np.uint8, np.uint16, np.uint32, np.uint64)


def bin_spikes(
    spike_times: np.ndarray,
    spike_clusters: np.ndarray,
    starts: np.ndarray,
    n_bins: int = 100,
    bin_size: float = 0.02,
    n_clusters: int | None = None,
) -> np.ndarray:
    """Spike counts per (trial, bin, cluster): shape (len(starts), n_bins, n_clusters).

    spike_times: sorted ascending (ALF spikes.times are; ValueError otherwise).
    spike_clusters: integer cluster ids in 0..n_clusters-1 (n_clusters defaults to max id + 1).
    starts: window start t0 of each trial (NEDS: stimOn_times − 0.5), finite, any order.

    Returns the smallest unsigned integer dtype that holds the largest count (uint8 in practice,
    as NEDS stores them). Do arithmetic on it with a wide accumulator (`sum(dtype=np.int64)`).
    Memory: the output plus a few MB, whatever the session length (trials go in small chunks).
    """
    times, clusters, starts, n_clusters = _checked_spike_inputs(spike_times, spike_clusters, starts, n_clusters)
    offsets = np.arange(n_bins + 1) * bin_size  # edge k of a trial is t0 + offsets[k]
    # Each trial's spikes are one contiguous run [first, stop) of the sorted times.
    first = np.searchsorted(times, starts, side="left")
    stop = np.searchsorted(times, starts + offsets[-1], side="left")

    out = np.zeros((len(starts), n_bins, n_clusters), dtype=np.uint8)
    for rows in _trial_chunks(stop - first, n_bins * n_clusters):
        counts = _bin_chunk(times, clusters, starts[rows], first[rows], stop[rows], offsets, n_clusters)
        top = int(counts.max(initial=0))
        if top > np.iinfo(out.dtype).max:  # rare: widen once, keeping memory small otherwise
            out = out.astype(_smallest_uint(top))
        out[rows] = counts
    return out


def _checked_spike_inputs(spike_times, spike_clusters, starts, n_clusters):
    times = np.asarray(spike_times, dtype=np.float64)
    clusters = np.asarray(spike_clusters)
    starts = np.asarray(starts, dtype=np.float64)
    if times.ndim != 1 or times.shape != clusters.shape:
        raise ValueError(f"spike_times {times.shape} and spike_clusters {clusters.shape} must be 1-D and of equal length")
    if clusters.size == 0:
        clusters = clusters.astype(np.int64)  # np.array([]) is float
    elif not np.issubdtype(clusters.dtype, np.integer):
        raise ValueError(f"spike_clusters must hold integer ids, not {clusters.dtype}")
    # One comparison pass over the session: cheap next to the binning itself.
    if times.size > 1 and np.any(times[1:] < times[:-1]):
        raise ValueError("spike_times must be sorted ascending")
    if not np.all(np.isfinite(starts)):
        raise ValueError("trial starts must be finite (drop trials without an alignment time first)")
    top = int(clusters.max()) if clusters.size else -1
    if n_clusters is None:
        n_clusters = top + 1
    if clusters.size and (int(clusters.min()) < 0 or top >= n_clusters):
        raise ValueError(f"spike_clusters range {int(clusters.min())}..{top} is outside 0..{n_clusters - 1}")
    return times, clusters, starts, int(n_clusters)


def _trial_chunks(pairs_per_trial: np.ndarray, cells_per_trial: int) -> list[slice]:
    """Contiguous trial slices, each with about _PAIRS_PER_CHUNK pairs and _CELLS_PER_CHUNK cells at most.

    A chunk may exceed the pair budget by one trial's spikes (a trial is never split).
    """
    if len(pairs_per_trial) == 0:
        return []
    pairs_before = np.cumsum(pairs_per_trial) - pairs_per_trial
    by_pairs = pairs_before // _PAIRS_PER_CHUNK
    by_cells = np.arange(len(pairs_per_trial)) // max(1, _CELLS_PER_CHUNK // max(cells_per_trial, 1))
    cuts = np.flatnonzero((np.diff(by_pairs) != 0) | (np.diff(by_cells) != 0)) + 1
    bounds = np.concatenate([[0], cuts, [len(pairs_per_trial)]])
    return [slice(a, b) for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]


def _bin_chunk(times, clusters, starts, first, stop, offsets, n_clusters) -> np.ndarray:
    """int64 counts (len(starts), n_bins, n_clusters) of a few trials, in one np.bincount."""
    n_trials, n_bins = len(starts), len(offsets) - 1
    sizes = stop - first
    # Expand the runs into (trial, spike) pairs without a loop: a running index that jumps to each
    # trial's first spike. Overlapping windows simply repeat a spike in several runs.
    spike = np.arange(int(sizes.sum()), dtype=np.int64)
    spike += np.repeat(first - (np.cumsum(sizes) - sizes), sizes)
    t0 = np.repeat(starts, sizes)
    x = times[spike] - t0  # ≥ 0: every selected spike is at or after its window start
    x /= offsets[1]  # the bin width
    bins = x.astype(np.int64)  # truncation is floor for x ≥ 0
    x -= bins
    near = np.flatnonzero((x < _EDGE_TOLERANCE) | (x > 1 - _EDGE_TOLERANCE))
    if near.size:
        bins[near] = _settle_edges(times[spike[near]], t0[near], bins[near], offsets)
    flat = np.repeat(np.arange(n_trials, dtype=np.int64) * n_bins, sizes)
    flat += bins
    flat *= n_clusters
    np.add(flat, clusters[spike], out=flat, casting="unsafe")  # any integer id dtype (ALF: uint32 or int64)
    return np.bincount(flat, minlength=n_trials * n_bins * n_clusters).reshape(n_trials, n_bins, n_clusters)


def _settle_edges(t: np.ndarray, t0: np.ndarray, bins: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Bin of spikes near an edge, by the edge definition t0 + offsets[k] ≤ t < t0 + offsets[k+1].

    The division is off by at most one bin, so one step down or up settles it.
    """
    bins = np.clip(bins, 0, len(offsets) - 2)  # every selected spike lies inside its window
    bins -= t < t0 + offsets[bins]
    bins += t >= t0 + offsets[bins + 1]
    return bins


def _smallest_uint(top: int) -> type:
    return next(dtype for dtype in _UINTS if top <= np.iinfo(dtype).max)


def mean_rates(counts: np.ndarray, window_s: float) -> np.ndarray:
    """Per-cluster mean rate in Hz: counts summed over bins, averaged over trials, / window length."""
    if counts.ndim != 3 or counts.shape[0] == 0:
        raise ValueError(f"counts must be (trials ≥ 1, bins, clusters), got shape {counts.shape}")
    return counts.sum(axis=1, dtype=np.int64).mean(axis=0) / window_s


def rate_filter(counts: np.ndarray, threshold_hz: float, window_s: float = 2.0) -> np.ndarray:
    """Mask of clusters whose mean rate is strictly above threshold_hz (NEDS: > 5 Hz).

    NEDS computes the rate over every trial of the session, before the trial filter: pass the
    counts of all trials that have an alignment time, not only the kept ones.
    """
    return mean_rates(counts, window_s) > threshold_hz


# Trial fields in which NEDS excludes a NaN (neds-facts.md §1.3).
NAN_EXCLUDED = ("stimOn_times", "choice", "feedback_times", "probabilityLeft", "firstMovement_times", "feedbackType")
_FILTER_FIELDS = (*NAN_EXCLUDED, "goCue_times")
MAX_REACTION_TIME_S = 10.0
MAX_RESPONSE_TIME_S = 10.0


def trial_filter(trials: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """NEDS's trial selection: (kept-trial mask, number of trials each exclusion rule hits).

    A trial is excluded if its reaction time firstMovement − stimOn is < 0 s or > 10 s, if
    feedback − goCue > 10 s, if any of the NAN_EXCLUDED fields is NaN, or if choice == 0 (no-go).
    Unbiased (probabilityLeft 0.5) trials are kept. A trial may hit several rules, so the counts
    per rule can add up to more than the key "total", the number of trials excluded.
    """
    missing = [name for name in _FILTER_FIELDS if name not in trials]
    if missing:
        raise ValueError(f"the trials table lacks {missing}, needed by the trial filter")
    field = {name: np.asarray(trials[name], dtype=np.float64) for name in _FILTER_FIELDS}
    # NaN comparisons are False: a NaN time is caught by its own NaN rule (goCue's by none, as in NEDS).
    with np.errstate(invalid="ignore"):
        reaction = field["firstMovement_times"] - field["stimOn_times"]
        response = field["feedback_times"] - field["goCue_times"]
        rules = {f"nan_{name}": np.isnan(field[name]) for name in NAN_EXCLUDED}
        rules["reaction_time_negative"] = reaction < 0
        rules["reaction_time_over_10s"] = reaction > MAX_REACTION_TIME_S
        rules["response_over_10s"] = response > MAX_RESPONSE_TIME_S
        rules["no_go"] = field["choice"] == 0
    excluded = np.logical_or.reduce(list(rules.values()))
    reasons = {name: int(hit.sum()) for name, hit in rules.items()}
    reasons["total"] = int(excluded.sum())
    return ~excluded, reasons
