"""Named registries: where plugins put what they provide, and where recipes look it up by name.

A registry maps a name (what a recipe writes) to an `Entry`: the factory the plugin registered,
the settings class that validates its recipe section, and who provided it. Registering a name
twice is an error naming both providers; looking up an unknown name is an error listing the
known names and the closest match, so a typo in a recipe is one clear line.
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Iterator

import attrs

from neds_framework.errors import NedsError

#: The modalities (what the others read and predict), the six registries of components in
#: data-flow order (README, "How it fits together"), then the three that extend the run itself:
#: stages (prepare, train, ...), extra `neds-run` sub-commands, and evaluation reporters.
COMPONENT_REGISTRIES = ("modalities", "data_sources", "tokenizers", "maskers", "heads", "metrics", "models")
RUN_REGISTRIES = ("stages", "commands", "reporters")
REGISTRY_NAMES = COMPONENT_REGISTRIES + RUN_REGISTRIES

# Singular nouns for messages ("unknown masker 'tmporal'").
_SINGULAR = {
    "modalities": "modality",
    "data_sources": "data source",
    "tokenizers": "tokenizer",
    "maskers": "masker",
    "heads": "head",
    "metrics": "metric",
    "models": "model",
    "stages": "stage",
    "commands": "command",
    "reporters": "reporter",
}


@attrs.frozen
class Provider:
    """Who registered an entry: the plugin (entry-point name) and its distribution."""

    plugin: str
    distribution: str = ""
    version: str = ""

    def __str__(self) -> str:
        if self.distribution:
            return f"plugin '{self.plugin}' ({self.distribution} {self.version})".replace(" )", ")")
        return f"plugin '{self.plugin}'"


@attrs.frozen
class Entry:
    """One registered thing.

    factory:  what the plugin registered (a class or a callable); called by the engine.
    settings: the attrs class that a recipe section for this entry is structured into, or None
              when the entry takes no settings. Taken from `factory.Settings` unless given.
    """

    name: str
    factory: Any
    settings: type | None
    provider: Provider


#: A registry's interface check: (name, factory) -> what the factory lacks (empty: it conforms).
Check = Callable[[str, Any], "list[str]"]


class Registry:
    """One named registry (e.g. `maskers`); ``check`` is its interface (`neds_framework.contracts`)."""

    def __init__(self, kind: str, check: Check | None = None):
        if kind not in _SINGULAR:
            raise ValueError(f"unknown registry {kind!r}; known: {', '.join(REGISTRY_NAMES)}")
        self.kind = kind
        self.noun = _SINGULAR[kind]
        self.check = check
        self._entries: dict[str, Entry] = {}

    def add(self, name: str, factory: Any, provider: Provider, settings: type | None = None) -> Entry:
        if not isinstance(name, str) or not name:
            raise NedsError(f"{provider} registered a {self.noun} with an invalid name {name!r}")
        if name in self._entries:
            first = self._entries[name].provider
            raise NedsError(
                f"{self.noun} '{name}' is registered twice: by {first} and by {provider}; "
                f"uninstall one of them or restrict plugins with NEDS_PLUGINS"
            )
        missing = self.check(name, factory) if self.check is not None else []
        if missing:
            raise NedsError(f"{provider}: {self.noun} '{name}' does not satisfy the {self.noun} interface: "
                            f"it needs {'; '.join(missing)}")
        if settings is None:
            settings = getattr(factory, "Settings", None)
        if settings is not None and not attrs.has(settings):
            raise NedsError(f"{provider}: settings for {self.noun} '{name}' must be an attrs class, got {settings!r}")
        entry = Entry(name=name, factory=factory, settings=settings, provider=provider)
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise NedsError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        known = sorted(self._entries)
        msg = f"unknown {self.noun} '{name}'"
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        if close:
            msg += f"; did you mean '{close[0]}'?"
        msg += f" Known {self.kind}: {', '.join(known) if known else '(none: is the plugin installed?)'}"
        return msg

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)


class Registries:
    """All registries of one loaded plugin set, addressed by attribute (`regs.maskers`)."""

    def __init__(self, checks: dict[str, Check] | None = None) -> None:
        for kind in REGISTRY_NAMES:
            setattr(self, kind, Registry(kind, (checks or {}).get(kind)))

    def __getitem__(self, kind: str) -> Registry:
        if kind not in REGISTRY_NAMES:
            raise KeyError(kind)
        return getattr(self, kind)

    def __iter__(self) -> Iterator[Registry]:
        return (getattr(self, k) for k in REGISTRY_NAMES)

    def register_function(self, kind: str, provider: Provider) -> Callable[..., Entry]:
        """The `register` callable handed to one plugin's `neds_register_<kind>` hook."""
        registry = self[kind]

        def register(name: str, factory: Any, settings: type | None = None) -> Entry:
            return registry.add(name, factory, provider, settings=settings)

        return register
