"""Modality specs: what a modality is, declared by the plugin that provides it.

The core names no modality. Everything it must know about one (whether it is neural activity
or behaviour, whether it has a time axis, how its values are read, which metrics score it, how
masks cover it, which ground truth is its oracle) comes from the `ModalitySpec` a plugin
registers through ``neds_register_modalities(register)``::

    register("pupil", ModalitySpec(role="behaviour", timing="per_bin", values="continuous",
                                   source="pupil diameter, z-scored per session"))

A recipe may only use modalities some plugin declared; the tokenizer and head it names for one
decide how the model reads and predicts it.
"""

from __future__ import annotations

from typing import Mapping

import attrs
import numpy as np

from neds_framework.errors import NedsError

ROLES = ("neural", "behaviour")
TIMINGS = ("per_bin", "per_trial")
VALUE_TYPES = ("counts", "continuous", "classes")
MASKINGS = ("token", "element")

#: The metric kind a spec gets when it names none: counts are scored as spike trains, values per
#: bin as traces, classes as labels (`Metric.kind` says which of these a metric scores).
DEFAULT_METRIC_KINDS = {("counts", "per_bin"): "counts", ("continuous", "per_bin"): "dynamic",
                        ("classes", "per_trial"): "static", ("continuous", "per_trial"): "trial_values"}


def _default_kind(spec: "ModalitySpec") -> str:
    return DEFAULT_METRIC_KINDS.get((spec.values, spec.timing), f"{spec.values}_{spec.timing}")


@attrs.frozen
class ModalitySpec:
    """One modality, as its plugin declares it.

    role:        neural (encoding predicts it; decoding reads it) or behaviour (the reverse)
    timing:      per_bin (arrays (trials, bins, ...)) or per_trial (arrays (trials,))
    values:      counts (non-negative integers), continuous (floats), or classes (integer
                 labels 0..n_classes-1)
    n_classes:   how many classes (values: classes only)
    masking:     token (one mask per bin or trial) or element (one per bin and channel, so
                 neuron- and region-masking schemes apply; per-bin arrays (trials, bins, channels))
    metric_kind: which metrics score it (`Metric.kind`); default from values and timing
    oracles:     evaluation task -> name of the session's ground-truth array scored as a
                 prediction of this modality in that task (e.g. true rates for counts)
    sources:     data source name -> how that source gets this modality when it does not produce
                 it itself: an object with ``read(session, source) -> array | None``, called by
                 the prepare stage with the source's `SessionData` (kept trials, splits, meta) and
                 the source object (None: absent from this session), and optionally
                 ``simulate(simulated, folder, rng)``, called by that source's simulator after it
                 wrote a simulated session into ``folder``, to write what ``read`` reads
    source:      how a data source or the simulator produces it, in words (`neds-run plugins`)
    """

    role: str = attrs.field(validator=attrs.validators.in_(ROLES))
    timing: str = attrs.field(validator=attrs.validators.in_(TIMINGS))
    values: str = attrs.field(validator=attrs.validators.in_(VALUE_TYPES))
    n_classes: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    masking: str = attrs.field(default="token", validator=attrs.validators.in_(MASKINGS))
    metric_kind: str = attrs.field(default=attrs.Factory(_default_kind, takes_self=True))
    oracles: Mapping[str, str] = attrs.field(factory=dict, converter=dict)
    sources: Mapping[str, object] = attrs.field(factory=dict, converter=dict)
    source: str = ""

    def __attrs_post_init__(self):
        if (self.values == "classes") != (self.n_classes >= 2):
            raise ValueError("n_classes (at least 2) goes with values 'classes', and only with it")
        if self.values == "classes" and self.timing != "per_trial":
            raise ValueError("values 'classes' are per-trial labels: use timing 'per_trial'")
        if self.masking == "element" and self.timing != "per_bin":
            raise ValueError("masking 'element' needs timing 'per_bin' (arrays trials x bins x channels)")
        for name, how in self.sources.items():
            if not callable(getattr(how, "read", None)):
                raise ValueError(f"sources['{name}'] needs a read(session, source) method")

    @property
    def neural(self) -> bool:
        return self.role == "neural"

    @property
    def per_trial(self) -> bool:
        return self.timing == "per_trial"

    @property
    def element_masked(self) -> bool:
        return self.masking == "element"

    def describe(self) -> str:
        """One line: what the modality is, and where it comes from (`neds-run plugins`)."""
        values = f"{self.n_classes} classes" if self.values == "classes" else self.values
        what = f"{self.role}, {self.timing.replace('_', ' ')}, {values}, {self.masking} masks, metrics '{self.metric_kind}'"
        return what + (f": {self.source}" if self.source else "")

    @property
    def dtype(self) -> np.dtype:
        """What batches hold: int64 class labels, float32 for everything else."""
        return np.dtype(np.int64) if self.values == "classes" else np.dtype(np.float32)


def check_spec(name: str, spec: object) -> list[str]:
    """What a registered modality lacks (an empty list: it is a valid spec)."""
    return [] if isinstance(spec, ModalitySpec) else [f"a ModalitySpec (neds_framework.api.ModalitySpec), got {type(spec).__name__}"]


def modality_specs(names, registries) -> dict[str, ModalitySpec]:
    """The spec of each named modality (a recipe's `modalities`), in the given order."""
    out = {}
    for name in names:
        if name not in registries.modalities:
            raise NedsError(f"modalities.{name}: {registries.modalities.unknown_message(name)}; "
                            "a plugin declares a modality with neds_register_modalities")
        out[name] = registries.modalities.get(name).factory
    return out


def neural_names(specs: Mapping[str, ModalitySpec]) -> tuple[str, ...]:
    return tuple(name for name, spec in specs.items() if spec.neural)


def check_array(eid: str, name: str, spec: ModalitySpec, array: np.ndarray, n_trials: int, n_neurons: int) -> None:
    """Raise NedsError naming what is wrong with one session's array of a modality."""
    array = np.asarray(array)
    where = f"session {eid}: modality '{name}'"
    if array.shape[:1] != (n_trials,):
        rows = array.shape[0] if array.ndim else "no"
        raise NedsError(f"{where} has {rows} rows, expected one per trial ({n_trials})")
    if spec.per_trial and array.ndim != 1:
        raise NedsError(f"{where} is per trial, so (trials,); got shape {array.shape}")
    if not spec.per_trial and array.ndim < 2:
        raise NedsError(f"{where} is per bin, so (trials, bins[, features]); got shape {array.shape}")
    if spec.element_masked and (array.ndim != 3 or array.shape[2] != n_neurons):
        raise NedsError(f"{where} must be (trials, bins, {n_neurons} neurons), got {array.shape}")
    if spec.values in ("counts", "classes") and array.size:
        if array.dtype.kind not in "iu":
            raise NedsError(f"{where} holds {spec.values}, so integers; got dtype {array.dtype}")
        low, high = int(array.min()), int(array.max())
        if low < 0:
            raise NedsError(f"{where} holds {spec.values}, so values >= 0; found {low}")
        if spec.values == "classes" and high >= spec.n_classes:
            raise NedsError(f"{where} has {spec.n_classes} classes (0..{spec.n_classes - 1}); found label {high}")
