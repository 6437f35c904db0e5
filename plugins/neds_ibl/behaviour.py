"""Behaviour variables as NEDS prepares them: static classes and dynamic traces on the bin grid.

Dynamic variables (wheel speed, whisker motion energy) follow neds-facts.md §1.6: the samples
strictly inside each trial window (t_beg, t_end) are linearly interpolated at the right bin edges
linspace(t_beg + w, t_end, n_bins), extrapolating linearly beyond the trial's first/last sample as
scipy's interp1d(fill_value="extrapolate") does. A trial is bad when it has fewer than two such
samples, or its first sample is more than one bin after t_beg, or its last more than one bin
before t_end. Everything is vectorised over trials.
"""

from __future__ import annotations

import numpy as np

CHOICE_LEVELS = (-1.0, 1.0)  # class = position: −1 → 0, +1 → 1
BLOCK_LEVELS = (0.2, 0.5, 0.8)  # probabilityLeft 0.2 → 0, 0.5 → 1, 0.8 → 2


def wheel_speed(velocity: np.ndarray) -> np.ndarray:
    """Wheel speed as NEDS uses it: |velocity| of brainbox's SessionLoader.load_wheel()
    (1 kHz samples of an 8th-order 20 Hz low-pass filtered derivative); times are unchanged."""
    return np.abs(np.asarray(velocity, dtype=np.float64))


def interpolate_to_bins(
    times: np.ndarray, values: np.ndarray, starts: np.ndarray, n_bins: int = 100, bin_size: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """Trace of each trial at its right bin edges: (out (K, n_bins) float32, good (K,) bool).

    times: sample times, finite and ascending; values: one value per sample (NaN allowed: it
    spreads to the bins interpolated from it). starts: window start t_beg of each trial; the
    window ends at t_beg + n_bins·bin_size. Bad trials (see the module docstring; a NaN start
    makes one too) are NaN rows.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.float64)
    if times.ndim != 1 or times.shape != values.shape:
        raise ValueError(f"times {times.shape} and values {values.shape} must be 1-D and of equal length")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) < 0):
        raise ValueError("behaviour sample times must be finite and ascending")
    ends = starts + n_bins * bin_size
    # Samples strictly inside (t_beg, t_end) are indices first .. stop-1 of the sorted times.
    first = np.searchsorted(times, starts, side="right")
    stop = np.searchsorted(times, ends, side="left")
    good = stop - first >= 2  # interp1d needs two samples for a slope (it returns NaN with one)
    # Coverage checks on the good candidates only: others may index past the end of `times`.
    rows = np.flatnonzero(good)
    good[rows] = (times[first[rows]] - starts[rows] <= bin_size) & (ends[rows] - times[stop[rows] - 1] <= bin_size)
    rows = np.flatnonzero(good)

    out = np.full((len(starts), n_bins), np.nan, dtype=np.float32)
    query = np.linspace(starts[rows] + bin_size, ends[rows], n_bins, axis=1)
    # interp1d's segment for a query q is the sample pair (i-1, i), i = number of the trial's
    # samples below q, clipped to [1, n-1] so that queries beyond the ends use the end segments.
    # Counted in the global times this is i = first + local count, clipped to [first+1, stop-1].
    hi = np.searchsorted(times, query, side="left")
    hi = np.clip(hi, first[rows, None] + 1, stop[rows, None] - 1)
    x_lo, x_hi, y_lo, y_hi = times[hi - 1], times[hi], values[hi - 1], values[hi]
    # interp1d's exact arithmetic, so results match it to the last bit before the float32 cast.
    out[rows] = (y_hi - y_lo) / (x_hi - x_lo) * (query - x_lo) + y_lo
    return out, good


# Coverage statuses of `bin_trace`, and the report's name for each exclusion.
COVERED, GAP, OUTSIDE = 0, 1, 2
EXCLUSION_REASONS = {GAP: "gap", OUTSIDE: "outside_recording"}


def bin_trace(
    times: np.ndarray, values: np.ndarray, starts: np.ndarray, n_bins: int = 100, bin_size: float = 0.02,
    max_gap: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """`interpolate_to_bins` with a coverage rule that does not lose trials to a dropped sample.

    Returns (out (K, n_bins) float32, status (K,) int: COVERED, GAP or OUTSIDE). A trial that
    `interpolate_to_bins` keeps gets exactly its values (NEDS's arithmetic). A trial it rejects for
    its edges (a dropped camera frame at the window start, say) is kept when every bin edge lies
    between two samples of the whole trace, inside the window or not, at most ``max_gap`` apart: its
    values are then interpolated between those two samples, never extrapolated. Every trial is
    excluded (GAP) when a bin edge falls in a gap wider than ``max_gap``, and (OUTSIDE) when its
    window reaches past the first or last sample of the recording.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.float64)
    out, good = interpolate_to_bins(times, values, starts, n_bins, bin_size)
    status = np.full(len(starts), OUTSIDE, dtype=np.int8)
    timed = np.flatnonzero(np.isfinite(starts))
    if times.size < 2 or timed.size == 0:
        return out, status
    query = starts[timed, None] + bin_size * np.arange(1, n_bins + 1)  # right bin edges, as NEDS queries
    hi = np.searchsorted(times, query, side="left")  # times[hi-1] < q <= times[hi]
    inside = (hi >= 1) & (hi <= times.size - 1)
    hi_c = np.clip(hi, 1, times.size - 1)
    wide = inside & ((times[hi_c] - times[hi_c - 1]) > max_gap)
    # NEDS's own trials: only a gap between two samples inside the window can exclude them (their
    # edges are within a bin of a sample by its rule). max_gap >= bin_size, so every such gap
    # holds a bin edge and is seen here.
    interior = (times[hi_c - 1] > starts[timed, None]) & (times[hi_c] < starts[timed, None] + n_bins * bin_size)
    own = good[timed]
    status[timed] = np.where(
        own,
        np.where((wide & interior).any(axis=1), GAP, COVERED),
        np.where(~inside.all(axis=1), OUTSIDE, np.where(wide.any(axis=1), GAP, COVERED)),
    )
    rescue = (status[timed] == COVERED) & ~own
    if rescue.any():
        out[timed[rescue]] = np.interp(query[rescue], times, values).astype(np.float32)
    out[status != COVERED] = np.nan
    return out, status


def pad_still(times: np.ndarray, values: np.ndarray, start: float, end: float, step: float = 1e-3):
    """A wheel trace extended with speed 0 from `start` to its first sample and from its last sample
    to `end`, at `step` spacing: the wheel encoder logs ticks only, so before the first tick and
    after the last the wheel was still, not unrecorded."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if times.size == 0:
        return times, values
    before = np.arange(times[0] - step, start - step, -step)[::-1] if start < times[0] else np.empty(0)
    after = np.arange(times[-1] + step, end + step, step) if end > times[-1] else np.empty(0)
    return (np.concatenate([before, times, after]),
            np.concatenate([np.zeros(before.size), values, np.zeros(after.size)]))


def minmax_scale(x: np.ndarray, train_idx: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Scale all trials to the [0, 1] range of the train trials: (float32 array, {'min', 'max'}).

    The statistics come from x[train_idx] only, ignoring NaN (bad trials), so nothing of the
    validation and test trials leaks into them; their values may fall outside [0, 1]. NEDS scaled
    with all kept trials. A train signal that is constant (or all NaN) cannot be scaled: ValueError.
    """
    x = np.asarray(x, dtype=np.float64)
    train = x[np.asarray(train_idx)]
    finite = train[np.isfinite(train)]
    if finite.size == 0:
        raise ValueError("cannot min-max scale: the train trials hold no finite value")
    lo, hi = float(finite.min()), float(finite.max())
    if hi == lo:
        raise ValueError(f"cannot min-max scale a signal that is constant ({lo}) over the train trials")
    return ((x - lo) / (hi - lo)).astype(np.float32), {"min": lo, "max": hi}


def _classes(values: np.ndarray, levels: tuple[float, ...], what: str) -> np.ndarray:
    """Index of each value in levels (compared with a tolerance: they are stored as floats)."""
    values = np.asarray(values, dtype=np.float64)
    match = np.isclose(values[..., None], np.asarray(levels), rtol=0.0, atol=1e-6)
    unknown = ~match.any(axis=-1)
    if unknown.any():
        raise ValueError(f"unexpected {what} values {np.unique(values[unknown]).tolist()}; expected {list(levels)}")
    return match.argmax(axis=-1).astype(np.int64)


def choice_classes(choice: np.ndarray) -> np.ndarray:
    """IBL choice −1/+1 → classes 0/1 (no-go trials, choice 0, are removed by the trial filter)."""
    return _classes(choice, CHOICE_LEVELS, "choice")


def block_classes(probability_left: np.ndarray) -> np.ndarray:
    """Block prior probabilityLeft 0.2/0.5/0.8 → classes 0/1/2."""
    return _classes(probability_left, BLOCK_LEVELS, "probabilityLeft")
