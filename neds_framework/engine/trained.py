"""A trained model back from a run record: the recipe's model, the run's sessions, a checkpoint.

The train stage writes into the record which sessions the model has (and each one's input
widths) and how many time bins a trial has; with those and the recipe the run was trained with,
the exact model is rebuilt and the checkpoint's weights loaded. Nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neds_framework.engine.record import RunRecord
from neds_framework.errors import NedsError
from neds_framework.model.build import build_model
from neds_framework.recipe import Recipe, load_recipe


def run_recipe_of(run_dir: str | Path, registries) -> Recipe:
    """The resolved recipe a run was made with (its folder's recipe.yaml)."""
    path = Path(run_dir) / "recipe.yaml"
    if not path.exists():
        raise NedsError(f"{run_dir}: no recipe.yaml in this run folder; is it a run made by neds-run?")
    return load_recipe(path, registries=registries)


def model_sessions(record: RunRecord) -> tuple[dict[str, dict[str, int]], int]:
    """(eid -> modality -> input width, bins per trial) of the model a run trained."""
    sessions = record.meta_value("model_sessions")
    n_bins = record.meta_value("n_bins")
    if not sessions or not n_bins:
        raise NedsError(f"{record.path}: the record names no model sessions; was the train stage run?")
    return sessions, int(n_bins)


def pick_checkpoint(record: RunRecord, name: str) -> str:
    """`name`, or 'last' when a 'best' was asked for and the run never validated."""
    if name == "best" and "best" not in record.checkpoints and "last" in record.checkpoints:
        return "last"
    return name


def load_trained_model(recipe: Recipe, registries, record: RunRecord, checkpoint: str = "best") -> torch.nn.Module:
    """The recipe's model with the run's sessions and the checkpoint's weights, in eval mode."""
    sessions, n_bins = model_sessions(record)
    model = build_model(recipe, registries, sessions, n_bins)
    name = pick_checkpoint(record, checkpoint)
    state = record.checkpoint(name)["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise NedsError(
            f"{record.path}: checkpoint '{name}' does not fit the recipe's model ({detail}); "
            f"use the model and modalities the run was trained with"
        ) from None
    return model.eval()
