"""Small numeric helpers shared by the engine and the metric plugins."""

from __future__ import annotations

import numpy as np


def nanmean_or_nan(values) -> float:
    """The mean over the non-NaN values, NaN when there are none (no warning).

    Infinities are kept: a neuron scored at -inf bits per spike makes its mean -inf, which is
    the honest summary of a prediction of zero rate where spikes came.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = ~np.isnan(values)
    return float(values[finite].mean()) if finite.any() else float("nan")
