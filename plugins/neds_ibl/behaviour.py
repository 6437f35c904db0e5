"""Behaviour variables as NEDS prepares them: dynamic traces on the bin grid, static classes.

Dynamic variables (wheel speed, whisker motion energy) follow neds-facts.md §1.6: the samples
strictly inside each trial window are linearly interpolated at the right bin edges
(t0 + w, t0 + 2w, ..., t0 + T·w), extrapolating from the trial's own first/last two samples; a
trial is bad when it has no sample, or its first sample is more than one bin after the window
start, or its last more than one bin before the window end. All of it vectorised over trials.
"""

from __future__ import annotations

import numpy as np

CHOICE_CLASSES = {-1.0: 0, 1.0: 1}
BLOCK_CLASSES = {0.2: 0, 0.5: 1, 0.8: 2}


def wheel_speed(velocity: np.ndarray) -> np.ndarray:
    """NEDS uses the speed (|velocity|) of brainbox's low-pass filtered wheel velocity."""
    return np.abs(np.asarray(velocity, dtype=np.float64))


def interpolate_to_bins(
    times: np.ndarray, values: np.ndarray, starts: np.ndarray, n_bins: int = 100, bin_size: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """(values at the right bin edges (K, n_bins) float32 with NaN rows for bad trials, good (K,))."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.float64)
    ends = starts + n_bins * bin_size
    # Samples strictly inside (t_beg, t_end): indices [first, last) into the sorted times.
    first = np.searchsorted(times, starts, side="right")
    last = np.searchsorted(times, ends, side="left")
    n_inside = last - first
    good = n_inside > 0
    safe_first = np.minimum(first, len(times) - 1)
    safe_last = np.clip(last - 1, 0, len(times) - 1)
    good &= times[safe_first] - starts <= bin_size
    good &= ends - times[safe_last] <= bin_size

    query = starts[:, None] + bin_size * np.arange(1, n_bins + 1)[None, :]
    # Interpolating segment for each query: the pair of in-window samples around it, clamped to
    # the trial's first/last pair so queries outside the samples extrapolate (interp1d style).
    right = np.searchsorted(times, query, side="right")
    lo_bound = first[:, None]
    hi_bound = np.maximum(last[:, None] - 1, lo_bound)  # last in-window sample
    right = np.clip(right, lo_bound + 1, hi_bound)
    left = right - 1
    single = n_inside == 1  # one sample: a constant, as there is no slope to extrapolate with
    left_c = np.clip(left, 0, len(times) - 1)
    right_c = np.clip(right, 0, len(times) - 1)
    t0, t1 = times[left_c], times[right_c]
    v0, v1 = values[left_c], values[right_c]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(t1 > t0, (v1 - v0) / (t1 - t0), 0.0)
    out = v0 + slope * (query - t0)
    out[single] = values[np.minimum(first[single], len(times) - 1)][:, None]
    out[~good] = np.nan
    return out.astype(np.float32), good


def minmax_scale(x: np.ndarray, train_idx: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Scale to [0, 1] with the min and max of the train trials only (the reference used all trials).

    Validation and test values may fall outside [0, 1]; that is the point: no test information
    leaks into the scaling. A constant train signal cannot be scaled and is an error.
    """
    train = x[np.asarray(train_idx)]
    lo, hi = float(np.nanmin(train)), float(np.nanmax(train))
    if not hi > lo:
        raise ValueError(f"cannot min-max scale a signal that is constant ({lo}) over the train trials")
    return ((x - lo) / (hi - lo)).astype(np.float32), {"min": lo, "max": hi}


def _classes(values: np.ndarray, mapping: dict[float, int], what: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    keys = np.array(sorted(mapping))
    idx = np.searchsorted(keys, values).clip(0, len(keys) - 1)
    ok = np.isclose(keys[idx], values)
    if not ok.all():
        raise ValueError(f"unexpected {what} values {np.unique(values[~ok]).tolist()}; expected {keys.tolist()}")
    return np.array([mapping[k] for k in keys.tolist()], dtype=np.int64)[idx]


def choice_classes(choice: np.ndarray) -> np.ndarray:
    """IBL choice −1/+1 → classes 0/1 (no-go trials, choice 0, are filtered out before)."""
    return _classes(choice, CHOICE_CLASSES, "choice")


def block_classes(probability_left: np.ndarray) -> np.ndarray:
    """Block prior probabilityLeft 0.2/0.5/0.8 → classes 0/1/2."""
    return _classes(probability_left, BLOCK_CLASSES, "probabilityLeft")
