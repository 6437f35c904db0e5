"""Before training: each new session's training split sets its loss scales and starting readouts.

A model that can use them has ``calibrate(session, values)`` (`Neds.calibrate`): the heads
compute their trivial predictor (mean rate, mean value, class prior) and its loss from the
session's training trials, never from validation or test trials. Other models are left alone.
"""

from __future__ import annotations

import numpy as np
import torch

from neds_framework.data.batches import BatchKey, StoreBatches
from neds_framework.data.store import SessionStore


def calibrate_sessions(model: torch.nn.Module, store: SessionStore, eids, specs) -> dict[str, dict[str, float]]:
    """Calibrate ``model`` on the training split of each of ``eids`` (reading the modalities of
    ``specs``); eid -> modality -> loss scale."""
    calibrate = getattr(model, "calibrate", None)
    if calibrate is None:
        return {}
    reader = StoreBatches(store, specs)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    scales = {}
    for eid in eids:
        trials = np.asarray(store.split(eid, "train"), dtype=np.int64)
        if not len(trials):
            continue
        _, values = reader[BatchKey(eid, tuple(trials.tolist()))]
        scales[eid] = calibrate(eid, {k: v.to(device) for k, v in values.items()})
    return scales
