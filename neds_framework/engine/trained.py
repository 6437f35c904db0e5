"""A trained model back from a run record: the recipe's model, the run's sessions, a checkpoint.

The train stage writes into the record which sessions the model has (and each one's input
widths) and how many time bins a trial has; with those and the recipe the run was trained with,
the exact model is rebuilt and the checkpoint's weights loaded. Nothing is unpickled.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import attrs
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


def build_trained(recipe: Recipe, registries, sessions: dict, n_bins: int, state: dict, where: str) -> torch.nn.Module:
    """The recipe's model for these sessions with ``state`` loaded, in eval mode."""
    model = build_model(recipe, registries, sessions, n_bins)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise NedsError(
            f"{where} does not fit the recipe's model ({detail}); use the model and modalities the run was trained with"
        ) from None
    return model.eval()


@attrs.frozen
class Trained:
    """A trained model's parts, from a run folder or a portable weights file."""

    recipe: Recipe  # the recipe it was trained with
    sessions: dict
    n_bins: int
    state: dict
    where: str  # for messages: the file (and checkpoint) it came from

    def model(self, registries, recipe: Recipe | None = None) -> torch.nn.Module:
        """The model, built from ``recipe`` (default: the one it was trained with)."""
        return build_trained(recipe or self.recipe, registries, self.sessions, self.n_bins, self.state, self.where)


def open_trained(source: str | Path, registries, checkpoint: str = "best") -> Trained:
    """A run folder (run.h5 + recipe.yaml; ``checkpoint`` picks best or last) or a
    ``.safetensors`` file written by ``neds-run export RUN --weights``."""
    from neds_framework.engine.weights import is_weights_file, read_weights

    if is_weights_file(source):
        weights = read_weights(source)
        with tempfile.TemporaryDirectory() as folder:  # the recipe loads (and is checked) as any recipe file
            path = Path(folder) / "recipe.yaml"
            path.write_text(weights.recipe_text)
            recipe = load_recipe(path, registries=registries)
        return Trained(recipe, weights.sessions, weights.n_bins, weights.state, str(source))
    record = RunRecord.load(source)
    sessions, n_bins = model_sessions(record)
    name = pick_checkpoint(record, checkpoint)
    return Trained(run_recipe_of(source, registries), sessions, n_bins, record.checkpoint(name)["model"],
                   f"{record.path}: checkpoint '{name}'")


def export_run_weights(run: str | Path, path: str | Path, checkpoint: str = "best") -> Path:
    """A run folder's checkpoint as a weights file, its resolved recipe and sessions in the header."""
    from neds_framework import __version__
    from neds_framework.engine.weights import write_weights

    record = RunRecord.load(run)
    sessions, n_bins = model_sessions(record)
    name = pick_checkpoint(record, checkpoint)
    recipe_file = Path(run) / "recipe.yaml"
    if not recipe_file.exists():
        raise NedsError(f"{run}: no recipe.yaml in this run folder; is it a run made by neds-run?")
    provenance = {"checkpoint": name, "source_run": str(run), "framework_version": __version__,
                  "torch_version": torch.__version__, "seed": str(record.meta_value("seed", ""))}
    return write_weights(path, record.checkpoint(name)["model"], recipe_file.read_text(), sessions, n_bins, provenance)
