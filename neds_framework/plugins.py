"""The plugin manager: finds every plugin through entry points and fills the registries.

Built-in plugins (``plugins/neds_*``) are declared under the entry-point group ``neds.plugins``
in this project's pyproject.toml, exactly as a third-party package declares its own, so both
take the same path: the `entrypoints` package finds them, pluggy holds them, and each plugin's
``neds_register_<registry>(register)`` hooks fill the registries with provenance. The core
imports no plugin by name.

``NEDS_PLUGINS`` restricts what loads: a comma-separated list of plugin names to load
(``NEDS_PLUGINS=neds_ibl,neds_metrics``), or of names to skip, each prefixed with ``-``
(``NEDS_PLUGINS=-broken_plugin``). Unset or empty: everything installed loads.
"""

from __future__ import annotations

import importlib.metadata
import os
import attrs
import entrypoints
import pluggy

from neds_framework import hookspecs
from neds_framework.contracts import CHECKS
from neds_framework.errors import NedsError, NedsRunError
from neds_framework.registry import REGISTRY_NAMES, Provider, Registries

ENTRY_POINT_GROUP = "neds.plugins"
ENV_VAR = "NEDS_PLUGINS"


@attrs.frozen
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    target: str  # "module:object" as written in the entry point

    @property
    def provider(self) -> Provider:
        return Provider(plugin=self.name, distribution=self.distribution, version=self.version)


@attrs.frozen
class PluginSet:
    """One loaded set of plugins and the registries they filled."""

    registries: Registries
    plugins: tuple[LoadedPlugin, ...]
    manager: pluggy.PluginManager


def parse_selection(value: str | None) -> tuple[frozenset[str] | None, frozenset[str]]:
    """Split a NEDS_PLUGINS value into (names to load or None for all, names to skip)."""
    items = [s.strip() for s in (value or "").split(",") if s.strip()]
    skip = frozenset(s[1:] for s in items if s.startswith("-"))
    keep = [s for s in items if not s.startswith("-")]
    if keep and skip:
        raise NedsError(f"{ENV_VAR}={value!r} mixes names to load and names to skip (-name); use one form")
    return (frozenset(keep) if keep else None), skip


def _discover(path: list[str] | None) -> list[entrypoints.EntryPoint]:
    """Entry points of the group, one per name.

    The same distribution can be visible twice on sys.path (an editable install plus its source
    folder's egg-info); those are the same plugin. Two different targets under one name are not.
    """
    found: dict[str, entrypoints.EntryPoint] = {}
    for ep in entrypoints.get_group_all(ENTRY_POINT_GROUP, path=path):
        seen = found.get(ep.name)
        if seen is None:
            found[ep.name] = ep
        elif (seen.module_name, seen.object_name) == (ep.module_name, ep.object_name):
            # Prefer the installed record (it has a version) over a source tree's egg-info.
            if _version(seen) is None:
                found[ep.name] = ep
        else:
            raise NedsError(
                f"two installed distributions declare the plugin '{ep.name}': "
                f"{_dist_name(seen)} ({_target(seen)}) and {_dist_name(ep)} ({_target(ep)}); uninstall one"
            )
    return [found[name] for name in sorted(found)]


def _dist_name(ep: entrypoints.EntryPoint) -> str:
    """The distribution's own spelling ('neds-framework'), not the dist-info folder's."""
    if ep.distro is None:
        return "unknown distribution"
    try:
        return importlib.metadata.distribution(ep.distro.name).metadata["Name"]
    except importlib.metadata.PackageNotFoundError:
        return ep.distro.name


def _version(ep: entrypoints.EntryPoint) -> str | None:
    return ep.distro.version if ep.distro is not None else None


def _target(ep: entrypoints.EntryPoint) -> str:
    return ep.module_name + (f":{ep.object_name}" if ep.object_name else "")


def _load_one(ep: entrypoints.EntryPoint) -> object:
    try:
        return ep.load()
    except Exception as exc:  # any import-time failure of someone else's code
        raise NedsRunError(
            f"plugin '{ep.name}' from {_dist_name(ep)} failed to import ({_target(ep)}): "
            f"{type(exc).__name__}: {exc}. Fix or uninstall it, or skip it with {ENV_VAR}=-{ep.name}"
        ) from exc


def load_plugins(selection: str | None = None, path: list[str] | None = None) -> PluginSet:
    """Load the plugins and fill fresh registries.

    selection: a NEDS_PLUGINS-style string; default: the environment variable.
    path:      folders to search for distributions; default: sys.path.
    """
    keep, skip = parse_selection(os.environ.get(ENV_VAR) if selection is None else selection)
    available = _discover(path)
    names = {ep.name for ep in available}
    unknown = sorted(((keep or frozenset()) | skip) - names)
    if unknown:
        raise NedsError(
            f"{ENV_VAR} names plugin(s) not installed: {', '.join(unknown)}; installed: {', '.join(sorted(names)) or '(none)'}"
        )

    manager = pluggy.PluginManager("neds")
    manager.add_hookspecs(hookspecs)
    loaded: list[LoadedPlugin] = []
    for ep in available:
        if (keep is not None and ep.name not in keep) or ep.name in skip:
            continue
        manager.register(_load_one(ep), name=ep.name)
        loaded.append(
            LoadedPlugin(
                name=ep.name,
                distribution=_dist_name(ep),
                version=_version(ep) or "",
                target=_target(ep),
            )
        )
    registries = Registries(CHECKS)
    _call_register_hooks(manager, registries, {p.name: p for p in loaded})
    return PluginSet(registries=registries, plugins=tuple(loaded), manager=manager)


def _call_register_hooks(manager: pluggy.PluginManager, registries: Registries, by_name: dict) -> None:
    """Call each plugin's hooks one by one, so every registration knows its provider."""
    for kind in REGISTRY_NAMES:
        hook = getattr(manager.hook, f"neds_register_{kind}")
        # pluggy lists implementations last-registered first; go in load order for stable errors.
        for impl in reversed(hook.get_hookimpls()):
            provider = by_name[impl.plugin_name].provider
            register = registries.register_function(kind, provider)
            try:
                impl.function(**({"register": register} if "register" in impl.argnames else {}))
            except NedsError:
                raise
            except Exception as exc:
                raise NedsRunError(
                    f"{provider} failed in neds_register_{kind}: {type(exc).__name__}: {exc}"
                ) from exc


_CACHE: dict[tuple, PluginSet] = {}


def get_plugins() -> PluginSet:
    """The plugin set for the current NEDS_PLUGINS value, loaded once per process."""
    key = (os.environ.get(ENV_VAR, ""),)
    if key not in _CACHE:
        _CACHE[key] = load_plugins()
    return _CACHE[key]


def reset_plugins() -> None:
    """Forget loaded plugin sets (tests that install plugins at run time call this)."""
    _CACHE.clear()
