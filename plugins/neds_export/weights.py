"""A run's model as portable weights (`neds_framework.engine.weights`)."""

from __future__ import annotations

from pathlib import Path

import torch

from neds_framework import __version__
from neds_framework.engine.record import RunRecord
from neds_framework.engine.trained import model_sessions, pick_checkpoint
from neds_framework.engine.weights import write_weights


def export_weights(run: Path, path: Path, checkpoint: str = "best") -> Path:
    """The run's checkpoint with the resolved recipe and model sessions in the file's metadata."""
    record = RunRecord.load(run)
    sessions, n_bins = model_sessions(record)
    name = pick_checkpoint(record, checkpoint)
    state = record.checkpoint(name)["model"]
    recipe_text = (Path(run) / "recipe.yaml").read_text()
    provenance = {"checkpoint": name, "source_run": str(run), "framework_version": __version__,
                  "torch_version": torch.__version__, "seed": str(record.meta_value("seed", ""))}
    return write_weights(path, state, recipe_text, sessions, n_bins, provenance)
