"""Recipes: one YAML file that names the stages, plugins and settings of a run.

Loading goes in three steps, each with errors that name the file and key path:

1. read: ``yaml.safe_load`` of the file and, recursively, of every ``extends:`` base (paths
   relative to the file that names them); a base is merged under the file, dictionaries key by
   key, anything else replaced whole.
2. override: each ``--set a.b.c=value`` replaces one key (the value is parsed as YAML).
3. structure: cattrs turns the merged dictionary into frozen attrs classes. A plugin's section
   (``{name: <registered name>, ...settings}``) is validated by the settings class that plugin
   registered; a stage's section (``train:``, ``eval:``, ...) by its stage's settings class.
   Unknown keys are errors.

``dump_recipe`` writes the resolved recipe (every default filled in) back to YAML.

The schema is in `recipe_schema`, reading and merging in `recipe_merge`, structuring in
`recipe_structure`; this module is what the rest of the code imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from neds_framework.recipe_merge import SET_ORIGIN, RawRecipe, apply_overlays, apply_overrides, read_recipe, read_yaml
from neds_framework.recipe_schema import (
    _CORE_KEYS,
    Component,
    DataSettings,
    DataSourceSpec,
    HeadSpec,
    KeyPath,
    MaskerSpec,
    MetricSpec,
    ModalitySettings,
    ModelSpec,
    Recipe,
    RecipeCore,
    RunSettings,
    TokenizerSpec,
)
from neds_framework.recipe_structure import (
    SettingsError,
    format_keypath,
    make_converter,
    structure_recipe,
    structure_settings,
)
from neds_framework.registry import Registries

__all__ = [
    "SET_ORIGIN", "Component", "DataSettings", "DataSourceSpec", "HeadSpec", "KeyPath", "MaskerSpec", "MetricSpec",
    "ModalitySettings", "ModelSpec", "RawRecipe", "Recipe", "RecipeCore", "RunSettings", "SettingsError",
    "TokenizerSpec", "apply_overlays", "apply_overrides", "dump_recipe", "format_keypath", "load_recipe",
    "make_converter", "read_recipe", "read_yaml", "recipe_to_dict", "structure_recipe", "structure_settings",
]


def load_recipe(
    path: str | Path,
    overrides: list[str] | None = None,
    registries: Registries | None = None,
    overlays: list[str | Path] | None = None,
) -> Recipe:
    """Read a recipe file, merge overlay files and then ``--set`` overrides over it, structure it."""
    raw = apply_overrides(apply_overlays(read_recipe(path), overlays or []), overrides or [])
    return structure_recipe(raw, registries)


def recipe_to_dict(recipe: Recipe) -> dict:
    """The resolved recipe as plain data (every default filled in)."""
    conv = make_converter(None)
    core = conv.unstructure(RecipeCore(**{k: getattr(recipe, k) for k in _CORE_KEYS}))
    for key, value in recipe.sections.items():
        core[key] = {} if value is None else conv.unstructure(value)
    return core


def dump_recipe(recipe: Recipe) -> str:
    """The resolved recipe as YAML text that loads back to the same recipe."""
    return yaml.safe_dump(_plain(recipe_to_dict(recipe)), sort_keys=False)


def _plain(value: Any) -> Any:
    """Tuples to lists, so safe_dump writes plain YAML sequences."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
