"""The recipe's schema: frozen attrs classes for its core sections and plugin components."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

KeyPath = tuple  # of str keys and int indices


@attrs.frozen
class Component:
    """A recipe section that picks a registered plugin by name and configures it.

    In YAML either a bare name (``masker: neds_multitask``) or a mapping whose ``name`` picks
    the plugin and whose other keys are that plugin's settings. ``config`` is the plugin's
    settings instance (None for a plugin without settings).
    """

    registry: ClassVar[str] = ""
    name: str
    config: Any = None


class DataSourceSpec(Component):
    registry = "data_sources"


class TokenizerSpec(Component):
    registry = "tokenizers"


class HeadSpec(Component):
    registry = "heads"


class MaskerSpec(Component):
    registry = "maskers"


class MetricSpec(Component):
    registry = "metrics"


class ModelSpec(Component):
    registry = "models"


@attrs.frozen
class RunSettings:
    """Where the run folder goes and how it is seeded."""

    dir: str = "runs"  # parent folder of run folders
    name: str = ""  # run folder name; default: the recipe file's stem
    seed: int = 0


@attrs.frozen
class DataSettings:
    """Which data source prepares the sessions, and where the prepared store lives."""

    source: DataSourceSpec
    store: str = ""  # HDF5 store path; default: <run.dir>/data/<source name>-<settings hash>.h5


@attrs.frozen
class ModalitySettings:
    """One modality of the model: how it becomes tokens, how it is read out, its loss weight."""

    tokenizer: TokenizerSpec
    head: HeadSpec
    weight: float = 1.0


@attrs.frozen
class RecipeCore:
    """The core keys of a recipe (stage sections are validated by their stages)."""

    stages: tuple[str, ...]
    run: RunSettings = RunSettings()
    data: DataSettings | None = None
    model: ModelSpec | None = None
    masker: MaskerSpec | None = None
    modalities: dict[str, ModalitySettings] = attrs.field(factory=dict)
    metrics: tuple[MetricSpec, ...] = ()


@attrs.frozen
class Recipe(RecipeCore):
    """A resolved recipe. ``sections`` holds each stage's own settings, keyed by stage name."""

    sections: dict[str, Any] = attrs.field(factory=dict)
    path: str = ""  # the recipe file it came from

    def section(self, stage: str) -> Any:
        return self.sections.get(stage)


_CORE_KEYS = tuple(a.name for a in attrs.fields(RecipeCore))
