"""What a stage receives when a recipe runs."""

from __future__ import annotations

from pathlib import Path

import attrs

from neds_framework.plugins import PluginSet
from neds_framework.recipe import Recipe


@attrs.frozen
class RunContext:
    """What a stage receives: the resolved recipe, the loaded plugins and the run folder."""

    recipe: Recipe
    plugins: PluginSet
    run_dir: Path
    resume: Path | None = None  # a run folder whose last checkpoint training continues from
