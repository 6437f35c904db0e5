"""A third-party neds-framework plugin: two new modalities and a metric, from the public API only.

- ``pupil``: pupil diameter per 20 ms bin (behaviour), read by the ``ibl`` data source from the
  left camera's ``features`` table (column ``pupilDiameter_smooth``, IBL's name) and written by
  its simulator, where it follows the simulated whisking (which the neurons encode).
- ``reward``: whether the trial was rewarded, a per-trial class from the trials table's
  ``feedbackType`` (-1 -> 0, +1 -> 1).
- ``example_mae``: a metric with its own settings, scoring every per-bin continuous modality.

Recipes give the modalities the built-in tokenizers and heads (``dynamic``/``regression``,
``static``/``classification``).
"""

from __future__ import annotations

import attrs
import numpy as np

from neds_framework.api import Metric, ModalitySpec, hookimpl

PUPIL_FILE = "_ibl_leftCamera.features.pqt"


def _bin_starts(session) -> np.ndarray:
    meta = session.meta
    return np.asarray(session.trials[meta["align_event"]], dtype=np.float64) + float(meta["window_start"])


class PupilFromCamera:
    """How the ``ibl`` source gets the pupil, and how its simulator makes one."""

    @staticmethod
    def read(session, source):
        from one.alf.exceptions import ALFObjectNotFound

        try:
            camera = source.one.load_object(session.eid, "leftCamera", collection="alf", attribute=["times", "features"])
        except ALFObjectNotFound:
            return None
        if "features" not in camera or "pupilDiameter_smooth" not in camera["features"]:
            return None
        times = np.asarray(camera["times"], dtype=np.float64)
        values = np.asarray(camera["features"]["pupilDiameter_smooth"], dtype=np.float64)
        bin_size, n_bins = float(session.meta["bin_size"]), int(session.meta["n_bins"])
        # Each bin's value at its right edge, as the built-in behaviour traces are sampled.
        edges = _bin_starts(session)[:, None] + bin_size * np.arange(1, n_bins + 1)
        binned = np.interp(edges.ravel(), times, values).reshape(edges.shape)
        train = binned[np.asarray(session.splits["train"], dtype=np.int64)]
        low, high = float(train.min()), float(train.max())
        if not high > low:
            return None
        return ((binned - low) / (high - low)).astype(np.float32)

    @staticmethod
    def simulate(simulated, folder, rng):
        import pandas as pd

        if "left" not in simulated.task.cameras:
            return
        times, energy = simulated.task.cameras["left"]
        energy = np.asarray(energy, dtype=np.float64)
        z = (energy - energy.mean()) / (energy.std() + 1e-12)
        # A slow pupil: whisking low-passed over ~0.5 s (an exponential filter at 60 Hz), plus noise.
        kernel = np.exp(-np.arange(30) / 15.0)
        slow = np.convolve(z, kernel / kernel.sum())[: len(z)]
        pupil = 3.0 + 0.6 * slow + 0.1 * rng.standard_normal(len(z))
        pd.DataFrame({"pupilDiameter_raw": pupil, "pupilDiameter_smooth": pupil}).to_parquet(folder / "alf" / PUPIL_FILE)


class RewardFromTrials:
    """The ``ibl`` source's trials table already holds it."""

    @staticmethod
    def read(session, source):
        feedback = np.asarray(session.trials.get("feedbackType", []))
        if len(feedback) != session.n_trials:
            return None
        return (feedback > 0).astype(np.int64)


MODALITIES = {
    "pupil": ModalitySpec(role="behaviour", timing="per_bin", values="continuous",
                          sources={"ibl": PupilFromCamera()},
                          source="pupil diameter (left camera features), min-max scaled on the train split"),
    "reward": ModalitySpec(role="behaviour", timing="per_trial", values="classes", n_classes=2,
                           sources={"ibl": RewardFromTrials()}, source="feedbackType: 0 error, 1 reward"),
}


class MeanAbsoluteError(Metric):
    """Mean absolute error between predictions and targets of per-bin values, optionally scaled."""

    kind = "dynamic"

    @attrs.frozen
    class Settings:
        scale: float = 1.0

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or self.Settings()

    def __call__(self, prediction, target, conditions=None) -> dict:
        prediction, target = np.asarray(prediction, float), np.asarray(target, float)
        keep = ~np.isnan(target)
        return {"mae": float(np.abs(prediction[keep] - target[keep]).mean()) * self.settings.scale}


@hookimpl
def neds_register_modalities(register):
    for name, spec in MODALITIES.items():
        register(name, spec)


@hookimpl
def neds_register_metrics(register):
    register("example_mae", MeanAbsoluteError)
