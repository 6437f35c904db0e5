"""A minimal third-party plugin: one metric with its own settings class."""

import attrs
import numpy as np

from neds_framework import hookimpl


@attrs.frozen
class MeanAbsoluteError:
    """Mean absolute error between predictions and targets, optionally scaled."""

    @attrs.frozen
    class Settings:
        scale: float = 1.0

    settings: Settings = Settings()

    def __call__(self, predictions, targets) -> dict:
        err = np.abs(np.asarray(predictions, float) - np.asarray(targets, float)).mean()
        return {"mae": float(err) * self.settings.scale}


@hookimpl
def neds_register_metrics(register):
    register("example_mae", MeanAbsoluteError)
