"""The interface of every registry, checked when a plugin registers into it.

Tokenizers, heads and maskers subclass their base classes (`neds_framework.api.Tokenizer`,
`Head`, `Masker`). The rest are duck-typed, as their interface classes below document: a data
source, a metric, a model, a stage and a command each need the listed attributes. A plugin whose
entry lacks one fails at load with its name and what is missing (`Registry.add`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from neds_framework.modality import check_spec
from neds_framework.model.interfaces import Head, Masker, Tokenizer


class DataSource(abc.ABC):
    """Turns session ids into `SessionData`. Built as ``factory(settings)``."""

    @abc.abstractmethod
    def eids(self) -> list[str]:
        """The session ids this source prepares, in order."""

    @abc.abstractmethod
    def prepare(self, eid: str):
        """One session's `neds_framework.api.SessionData` (modalities named by registered specs)."""

    @abc.abstractmethod
    def settings_for_hash(self) -> dict:
        """Everything that changes the prepared arrays (the store is rebuilt when it changes)."""


class Metric(abc.ABC):
    """Scores predictions of the modalities whose spec's ``metric_kind`` equals ``kind``.

    Built as ``factory(settings_or_None)``; called as ``metric(prediction, target, conditions=...)``
    and returns ``{name: scalar or per-neuron array}``. NaN targets are not scored.
    """

    kind: ClassVar[str]

    @abc.abstractmethod
    def __call__(self, prediction: np.ndarray, target: np.ndarray, conditions=None) -> dict[str, Any]:
        """Named scores."""


class Command(abc.ABC):
    """An extra ``neds-run`` sub-command."""

    help: ClassVar[str]

    @abc.abstractmethod
    def add_arguments(self, parser) -> None:
        """Fill an argparse parser."""

    @abc.abstractmethod
    def run(self, args) -> int:
        """Run it; the exit code."""


def _subclass(base: type):
    def check(name: str, factory: Any) -> list[str]:
        if isinstance(factory, type) and issubclass(factory, base):
            return []
        return [f"a subclass of neds_framework.api.{base.__name__}, got {factory!r}"]

    return check


def _attributes(interface: type, names: tuple[str, ...], typed: dict[str, type] | None = None):
    def check(name: str, factory: Any) -> list[str]:
        missing = [f"'{a}' ({interface.__name__} interface)" for a in names if not callable(getattr(factory, a, None))]
        for attribute, kind in (typed or {}).items():
            if not isinstance(getattr(factory, attribute, None), kind):
                missing.append(f"a {kind.__name__} attribute '{attribute}' ({interface.__name__} interface)")
        return missing

    return check


def _callable(what: str):
    def check(name: str, factory: Any) -> list[str]:
        return [] if callable(factory) else [f"to be callable ({what}), got {type(factory).__name__}"]

    return check


#: Registry -> its interface check, handed to `Registries` by the plugin loader.
CHECKS = {
    "modalities": check_spec,
    "data_sources": _attributes(DataSource, ("eids", "prepare", "settings_for_hash")),
    "tokenizers": _subclass(Tokenizer),
    "maskers": _subclass(Masker),
    "heads": _subclass(Head),
    "metrics": lambda name, factory: _callable("factory(settings) -> metric")(name, factory)
    + _attributes(Metric, (), {"kind": str})(name, factory),
    "models": _callable("factory(settings, modalities) -> model"),
    "stages": _callable("factory(context)"),
    "commands": _attributes(Command, ("add_arguments", "run"), {"help": str}),
    "reporters": _callable("factory(settings) -> reporter(report)"),
}
