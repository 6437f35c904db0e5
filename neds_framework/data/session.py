"""The session contract: what a data source hands to the store, and what the store gives back.

One `SessionData` holds one prepared recording (an IBL eid) after preprocessing: per-neuron
metadata, per-trial metadata, one array per modality (trial-major), the trial splits, the
train-split scaling of the dynamic behaviours, and optionally the simulator's ground truth.
Arrays are plain numpy; the class checks shapes on construction so a data source that gets them
wrong fails where the mistake is made, not three stages later.
"""

from __future__ import annotations

import attrs
import numpy as np

#: Names of the trial splits, in the order they are drawn.
SPLITS = ("train", "val", "test")

#: Per-neuron fields every session carries.
NEURON_FIELDS = ("uuid", "region", "depth", "probe", "cluster_id")


def _check_session(instance: "SessionData", attribute, value) -> None:
    del attribute, value
    instance.validate()


@attrs.define(frozen=True, eq=False)
class SessionData:
    """One prepared session.

    eid:        the IBL session id (a UUID string).
    meta:       scalar facts (lab, subject, date, number, probes, bin_size, n_bins, ...).
    neurons:    per-neuron arrays, each of length N: uuid (str), region (Beryl acronym, str),
                depth (float, um), probe (str), cluster_id (int, after the multi-probe offset).
    trials:     per-trial arrays, each of length K (the kept trials): `trial_index` (row in the
                session's trials table), event times, contrasts, choice, probabilityLeft, ...
    modalities: one array per present modality, trial-major: spikes (K, T, N) integer counts;
                wheel, whisker (K, T) float32; lfp (K, T, F) float32; choice, block (K,) int64
                class indices. A modality the session lacks is simply absent.
    splits:     'train', 'val', 'test' -> sorted int64 indices into the K kept trials.
    scaling:    per dynamic behaviour, the train-split statistics used to scale it
                ({'wheel': {'min': .., 'max': ..}}), so predictions can be mapped back.
    truth:      optional ground truth from the simulator: 'rates' (K, T, N) float32, the expected
                spike count of each neuron in each bin (the Poisson mean), and 'behaviour_rates'
                (K, T, N), the expected count given only the behaviour a model sees.
    report:     counts from preparation (trials excluded per reason, neurons below threshold...).
    """

    eid: str
    meta: dict = attrs.field(factory=dict)
    neurons: dict = attrs.field(factory=dict)
    trials: dict = attrs.field(factory=dict)
    modalities: dict = attrs.field(factory=dict)
    splits: dict = attrs.field(factory=dict)
    scaling: dict = attrs.field(factory=dict)
    truth: dict = attrs.field(factory=dict)
    report: dict = attrs.field(factory=dict, validator=_check_session)

    @property
    def n_trials(self) -> int:
        return len(next(iter(self.trials.values()))) if self.trials else 0

    @property
    def n_neurons(self) -> int:
        return len(self.neurons["uuid"]) if "uuid" in self.neurons else 0

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        k = self.n_trials
        for name, arr in self.trials.items():
            if len(arr) != k:
                raise ValueError(f"session {self.eid}: trials.{name} has {len(arr)} rows, expected {k}")
        missing = [f for f in NEURON_FIELDS if f not in self.neurons]
        if missing:
            raise ValueError(f"session {self.eid}: neurons lack {', '.join(missing)}")
        n = self.n_neurons
        for name, arr in self.neurons.items():
            if len(arr) != n:
                raise ValueError(f"session {self.eid}: neurons.{name} has {len(arr)} rows, expected {n}")
        for name, arr in list(self.modalities.items()) + [(f"truth.{k_}", v) for k_, v in self.truth.items()]:
            arr = np.asarray(arr)
            if arr.shape[:1] != (k,):
                raise ValueError(f"session {self.eid}: {name} has leading dimension {arr.shape[:1]}, expected ({k},)")
        for name, idx in self.splits.items():
            if name not in SPLITS:
                raise ValueError(f"session {self.eid}: unknown split {name!r}; expected one of {SPLITS}")
            idx = np.asarray(idx)
            if idx.size and (idx.min() < 0 or idx.max() >= k):
                raise ValueError(f"session {self.eid}: split {name} indexes outside 0..{k - 1}")
