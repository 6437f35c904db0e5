"""Build a model from a recipe: the registered model, with the tokenizer and head of each modality.

The model factory is called as ``factory(settings, modalities)`` with ``modalities`` a dict of
`ModalityParts` (each with its registered `ModalitySpec`); tokenizers and heads as ``factory(modality, hidden, n_bins, settings)``, where
``hidden`` is the model's ``settings.hidden``. Then every session gets its per-session layers.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from neds_framework.errors import NedsError
from neds_framework.modality import modality_specs
from neds_framework.model.interfaces import ModalityParts
from neds_framework.recipe import Component, Recipe
from neds_framework.registry import Registries


def component_settings(spec: Component, registries: Registries) -> Any:
    """The spec's settings, or the entry's defaults when the recipe gave a section without any."""
    if spec.config is not None:
        return spec.config
    entry = registries[spec.registry].get(spec.name)
    return entry.settings() if entry.settings is not None else None


def build_model(
    recipe: Recipe, registries: Registries, sessions: dict[str, dict[str, int]], n_bins: int
) -> nn.Module:
    """The recipe's model with layers for ``sessions`` (eid -> modality -> input width)."""
    if recipe.model is None:
        raise NedsError("the recipe has no 'model' section: name one, e.g. model: {name: neds}")
    if not recipe.modalities:
        raise NedsError("the recipe has no 'modalities': give each modality its tokenizer and head")
    settings = component_settings(recipe.model, registries)
    hidden = getattr(settings, "hidden", None)
    if hidden is None:
        raise NedsError(f"model '{recipe.model.name}' has no 'hidden' setting to size its tokenizers and heads")
    specs = modality_specs(recipe.modalities, registries)
    modalities = {}
    for name, spec in recipe.modalities.items():
        tokenizer = registries.tokenizers.get(spec.tokenizer.name).factory(
            name, hidden, n_bins, component_settings(spec.tokenizer, registries)
        )
        head_settings = component_settings(spec.head, registries)
        classes = getattr(head_settings, "n_classes", None)
        if classes is not None and specs[name].values == "classes" and classes != specs[name].n_classes:
            raise NedsError(f"modalities.{name}.head.n_classes: {classes}, but modality '{name}' has "
                            f"{specs[name].n_classes} classes; set n_classes: {specs[name].n_classes}")
        head = registries.heads.get(spec.head.name).factory(name, hidden, n_bins, head_settings)
        modalities[name] = ModalityParts(tokenizer=tokenizer, head=head, spec=specs[name], weight=spec.weight)
    model = registries.models.get(recipe.model.name).factory(settings, modalities)
    for eid, features in sessions.items():
        model.add_session(eid, features)
    return model
