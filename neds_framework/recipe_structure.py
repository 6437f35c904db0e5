"""Structuring a merged recipe into its schema with cattrs, every problem one line naming the
file and key path; plugin sections are checked by the settings classes their plugins registered."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any

import attrs
import cattrs
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from neds_framework.errors import NedsError
from neds_framework.recipe_merge import RawRecipe
from neds_framework.recipe_schema import _CORE_KEYS, Component, KeyPath, Recipe, RecipeCore
from neds_framework.registry import Registries


class _StructureError(Exception):
    """A leaf problem found while structuring, with its key path relative to where it was raised."""

    def __init__(self, message: str, keypath: KeyPath = ()):
        super().__init__(message)
        self.keypath = keypath


class SettingsError(NedsError):
    """A problem inside a plugin's settings that only the loaded plugins can find (a mixture's
    member masker, say), with its key path relative to the plugin's section. A settings class may
    define ``check_nested(registries)`` that raises it; the recipe calls it while structuring, so
    ``neds-run validate`` reports it as the run would, as ``<section>.<keypath>: <message>``."""

    def __init__(self, message: str, keypath: KeyPath = ()):
        super().__init__(message)
        self.keypath = tuple(keypath)


def structure_settings(value: Any, cls: type, registries: Registries | None, keypath: KeyPath = ()) -> Any:
    """``value`` structured into the attrs class ``cls`` as a recipe section is; a problem raises
    `SettingsError` naming its key path below ``keypath``."""
    try:
        return make_converter(registries).structure({} if value is None else value, cls)
    except _STRUCTURE_ERRORS as exc:
        leaves = _leaf_errors(exc, ())
        raw: Any = value
        for key in reversed(keypath):
            raw = {key: raw}
        path, message = _describe(leaves[0][1], tuple(keypath) + leaves[0][0], raw if keypath else value)
        raise SettingsError(message, path) from None


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    if attrs.has(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _strict_scalar_hooks(conv: cattrs.Converter) -> None:
    """YAML gives real types; refuse silent coercions ('no' -> True, 5 -> '5', 2.5 -> 2)."""

    def expect(tp, ok):
        def hook(value, _):
            if not ok(value):
                raise _StructureError(f"expected {_type_name(tp)}, got {value!r}")
            return tp(value)

        return hook

    def to_float(value, _):
        # PyYAML reads '1e-3' (no dot) as a string: accept numeric strings, nothing else.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _StructureError(f"expected float, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise _StructureError(f"expected float, got {value!r}") from None

    def to_bool(value, _):
        if not isinstance(value, bool):  # recipes read YAML 1.2 booleans: yes/no/on/off stay strings
            raise _StructureError(f"expected bool (true or false), got {value!r}")
        return value

    conv.register_structure_hook(bool, to_bool)
    conv.register_structure_hook(int, expect(int, lambda v: isinstance(v, int) and not isinstance(v, bool)))
    conv.register_structure_hook(str, expect(str, lambda v: isinstance(v, str)))
    conv.register_structure_hook(float, to_float)


def make_converter(registries: Registries | None) -> cattrs.Converter:
    """A converter for recipes. Without registries, plugin sections are checked for a name only."""
    conv = cattrs.Converter(forbid_extra_keys=True)
    _strict_scalar_hooks(conv)

    def structure_component(value: Any, cls: type) -> Component:
        if isinstance(value, str):
            value = {"name": value}
        if not isinstance(value, dict):
            raise _StructureError(f"expected a {cls.registry[:-1].replace('_', ' ')} name or a mapping with 'name', got {value!r}")
        if "name" not in value:
            raise _StructureError("missing key 'name' (which registered plugin to use)")
        name = value["name"]
        if not isinstance(name, str):
            raise _StructureError(f"expected a name, got {name!r}", ("name",))
        settings = {k: v for k, v in value.items() if k != "name"}
        if registries is None:
            return cls(name=name, config=settings or None)
        entry_reg = registries[cls.registry]
        if name not in entry_reg:
            raise _StructureError(entry_reg.unknown_message(name), ("name",))
        entry = entry_reg.get(name)
        if entry.settings is None:
            if settings:
                raise _StructureError(f"{entry_reg.noun} '{name}' takes no settings; remove {', '.join(sorted(settings))}")
            return cls(name=name, config=None)
        config = conv.structure(settings, entry.settings)
        _check_nested(config, registries)
        return cls(name=name, config=config)

    conv.register_structure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Component), structure_component
    )

    def unstructure_component(c: Component) -> Any:
        if c.config is None:
            return c.name
        settings = c.config if isinstance(c.config, dict) else conv.unstructure(c.config)
        return {"name": c.name, **settings}

    conv.register_unstructure_hook_func(
        lambda t: isinstance(t, type) and issubclass(t, Component), unstructure_component
    )
    return conv


def _leaf_errors(exc: BaseException, keypath: KeyPath = ()) -> list[tuple[KeyPath, BaseException]]:
    """Flatten cattrs' exception groups into (key path, leaf exception)."""
    for note in getattr(exc, "__notes__", []):
        if hasattr(note, "name") and isinstance(getattr(note, "name"), str):
            keypath = keypath + (note.name,)
        elif type(note).__name__ == "IterableValidationNote":
            keypath = keypath + (note.index,)
    if isinstance(exc, (ClassValidationError, IterableValidationError)):
        out = []
        for sub in exc.exceptions:
            out.extend(_leaf_errors(sub, keypath))
        return out
    return [(keypath + getattr(exc, "keypath", ()), exc)]


def _describe(exc: BaseException, keypath: KeyPath, raw: dict) -> tuple[KeyPath, str]:
    if isinstance(exc, ForbiddenExtraKeysError):
        key = sorted(exc.extra_fields)[0]
        known = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return keypath + (key,), f"unknown key{hint} Known keys here: {', '.join(known) or '(none)'}"
    if isinstance(exc, KeyError):
        return keypath, "missing required key"
    if isinstance(exc, _StructureError):
        return keypath, str(exc)
    if isinstance(exc, (ValueError, TypeError)) and len(exc.args) > 1 and isinstance(exc.args[1], attrs.Attribute):
        # an attrs validator: (message, attribute, ...); its message already names the choices
        return keypath + (exc.args[1].name,), str(exc.args[0])
    named = re.match(r"'(\w+)' must be", str(exc)) if isinstance(exc, ValueError) else None
    if named:  # attrs' number validators name the attribute only in their message
        return keypath + (named.group(1),), str(exc)
    value = _lookup(raw, keypath)
    if isinstance(value, dict):  # a whole section refused by its own check: its message says why
        return keypath, str(exc)
    if isinstance(exc, (TypeError, AttributeError)) and not isinstance(value, dict) and re.search(
            r"not iterable|not subscriptable|has no attribute '(get|keys|items)'|not a mapping", str(exc)):
        return keypath, f"expected a mapping of settings (key: value lines), got {value!r}"
    return keypath, f"invalid value {value!r}: {exc}"


def _lookup(data: Any, keypath: KeyPath) -> Any:
    for k in keypath:
        try:
            data = data[k]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def format_keypath(keypath: KeyPath) -> str:
    out = ""
    for k in keypath:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def _fail(raw: RawRecipe, keypath: KeyPath, message: str) -> NedsError:
    return NedsError(f"{raw.origin(keypath)}: {format_keypath(keypath)}: {message}")


def structure_recipe(raw: RawRecipe, registries: Registries | None) -> Recipe:
    """Turn a merged recipe dictionary into a `Recipe`, validating every plugin section."""
    data = dict(raw.data)
    stage_registry = registries.stages if registries is not None else None
    sections_raw = {k: data.pop(k) for k in list(data) if k not in _CORE_KEYS}
    for key in sections_raw:
        if stage_registry is not None and key in stage_registry:
            continue
        known = list(_CORE_KEYS) + (stage_registry.names() if stage_registry is not None else [])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise _fail(raw, (key,), f"unknown key{hint} Known keys: {', '.join(known)}")
    if "stages" not in data:
        raise _fail(raw, ("stages",), "missing required key: the list of stages to run, e.g. [prepare, train, eval]")

    conv = make_converter(registries)
    try:
        core = conv.structure(data, RecipeCore)
    except _STRUCTURE_ERRORS as exc:
        raise _error_from(raw, exc, ()) from None
    sections = {}
    for key, value in sections_raw.items():
        try:
            sections[key] = _structure_section(conv, stage_registry.get(key), key, value, registries)
        except _STRUCTURE_ERRORS as exc:
            raise _error_from(raw, exc, (key,)) from None

    if stage_registry is not None:
        for i, stage in enumerate(core.stages):
            if stage not in stage_registry:
                raise _fail(raw, ("stages", i), stage_registry.unknown_message(stage))
    if registries is not None:
        for name in core.modalities:  # every modality must be declared by a plugin (its ModalitySpec)
            if name not in registries.modalities:
                raise _fail(raw, ("modalities", name), registries.modalities.unknown_message(name)
                            + "; a plugin declares a modality with neds_register_modalities")
    return Recipe(**attrs.asdict(core, recurse=False), sections=sections, path=raw.path)


_STRUCTURE_ERRORS = (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError, _StructureError)


def _error_from(raw: RawRecipe, exc: BaseException, prefix: KeyPath) -> NedsError:
    """One line for the first problem cattrs found (and how many more there are)."""
    leaves = _leaf_errors(exc, prefix)
    keypath, message = _describe(leaves[0][1], leaves[0][0], raw.data)
    if len(leaves) > 1:
        message += f" (and {len(leaves) - 1} more problem{'s' if len(leaves) > 2 else ''})"
    return _fail(raw, keypath, message)


def _structure_section(conv: cattrs.Converter, entry, key: str, value: Any, registries: Registries | None = None) -> Any:
    if entry.settings is None:
        if value not in (None, {}):
            raise _StructureError(f"stage '{key}' takes no settings")
        return None
    settings = conv.structure({} if value is None else value, entry.settings)
    _check_nested(settings, registries)
    return settings


def _check_nested(settings: Any, registries: Registries | None) -> None:
    """Run a settings object's ``check_nested(registries)`` (what only the loaded plugins can
    check, e.g. a mixture's members), its `SettingsError` becoming a structuring error at its key path."""
    check_nested = getattr(settings, "check_nested", None)
    if callable(check_nested) and registries is not None:
        try:
            check_nested(registries)
        except SettingsError as exc:
            raise _StructureError(str(exc), exc.keypath) from None
