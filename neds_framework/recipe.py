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
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping

import attrs
import cattrs
import yaml
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from neds_framework.errors import NedsError
from neds_framework.registry import Registries

KeyPath = tuple  # of str keys and int indices

SET_ORIGIN = "--set"


# --------------------------------------------------------------------------- schema


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


# --------------------------------------------------------------------------- reading


@attrs.frozen
class RawRecipe:
    """The merged dictionary of a recipe and where each key came from."""

    data: dict
    origins: dict  # KeyPath -> file (or "--set") that set it
    path: str

    def origin(self, keypath: KeyPath) -> str:
        for n in range(len(keypath), -1, -1):
            if keypath[:n] in self.origins:
                return self.origins[keypath[:n]]
        return self.path


def read_yaml(path: Path, named_by: str = "") -> dict:
    """Parse one YAML file into a mapping, with one-line errors."""
    where = f"{named_by}: " if named_by else ""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise NedsError(f"{where}recipe file '{path}' not found") from None
    except OSError as exc:
        raise NedsError(f"{where}cannot read recipe file '{path}': {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise NedsError(f"{path}: {at}YAML syntax error: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise NedsError(f"{path}: a recipe must be a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base: dict, top: dict, base_origins: dict, top_origins: dict, prefix: KeyPath = ()) -> tuple[dict, dict]:
    """`top` over `base`: mappings merge key by key (except a plugin section that names another
    plugin, see `_switches_plugin`), anything else is replaced whole."""
    merged = dict(base)
    origins = dict(base_origins)
    for key, value in top.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _switches_plugin(base[key], value):
            merged[key], origins = _merge(base[key], value, origins, top_origins, path)
        else:
            merged[key] = value
            # Whatever the base said under this key no longer applies.
            origins = {p: o for p, o in origins.items() if p[: len(path)] != path}
            origins.update({p: o for p, o in top_origins.items() if p[: len(path)] == path})
        origins[path] = top_origins.get(path, top_origins[()])
    return merged, origins


def _switches_plugin(base: dict, top: dict) -> bool:
    """A plugin section naming another plugin replaces the base section whole: the base's
    settings belong to the plugin it named and would be unknown keys to the new one."""
    return "name" in top and "name" in base and top["name"] != base["name"]


def _origins_of(data: Any, label: str, prefix: KeyPath = ()) -> dict:
    out = {prefix: label}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_origins_of(value, label, prefix + (key,)))
    return out


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = ()) -> RawRecipe:
    """Read a recipe and its ``extends:`` chain into one merged dictionary."""
    path = Path(path)
    named_by = f"{_chain[-1]}: extends" if _chain else ""
    if _chain and not path.exists():
        raise NedsError(f"{named_by}: file '{path}' not found (extends paths are relative to the recipe that names them)")
    data = read_yaml(path, named_by)
    resolved = path.resolve()
    if resolved in {p.resolve() for p in _chain}:
        raise NedsError(f"{path}: extends: cycle through {' -> '.join(str(p) for p in _chain + (path,))}")
    bases = data.pop("extends", None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    elif not (isinstance(bases, list) and all(isinstance(b, str) for b in bases)):
        raise NedsError(f"{path}: extends: expected a file name or a list of file names, got {bases!r}")
    merged: dict = {}
    origins: dict = {(): str(path)}
    for base in bases:
        raw = read_recipe(path.parent / base, _chain + (path,))
        merged, origins = _merge(merged, raw.data, origins, raw.origins)
    merged, origins = _merge(merged, data, origins, _origins_of(data, str(path)))
    origins[()] = str(path)
    return RawRecipe(data=merged, origins=origins, path=str(path))


def apply_overlays(raw: RawRecipe, overlays: list[str | Path]) -> RawRecipe:
    """Merge overlay recipe files on top, in order (``neds-run RECIPE --overlay FILE``).

    An overlay is a partial recipe (it may use ``extends:`` itself) merged exactly as a recipe
    is merged over what it extends; errors name the overlay file for the keys it set.
    """
    data, origins = raw.data, dict(raw.origins)
    for overlay in overlays:
        path = Path(overlay)
        if not path.exists():
            raise NedsError(f"--overlay: file '{path}' not found")
        top = read_recipe(path)
        data, origins = _merge(data, top.data, origins, top.origins)
    origins[()] = raw.path
    return RawRecipe(data=data, origins=origins, path=raw.path)


def apply_overrides(raw: RawRecipe, overrides: list[str]) -> RawRecipe:
    """Apply ``key.path=value`` overrides (value parsed as YAML) in order."""
    data = raw.data
    origins = dict(raw.origins)
    for item in overrides:
        key, sep, text = item.partition("=")
        keys = tuple(key.strip().split("."))
        if not sep or not all(keys):
            raise NedsError(f"--set {item!r}: expected key.path=value, e.g. --set train.lr=0.001")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise NedsError(f"--set {item!r}: the value is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        patch: Any = value
        for k in reversed(keys):
            patch = {k: patch}
        data, origins = _merge(data, patch, origins, {(): f"{SET_ORIGIN} {key}"})
    return RawRecipe(data=data, origins=origins, path=raw.path)


# --------------------------------------------------------------------------- structuring


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

    conv.register_structure_hook(bool, expect(bool, lambda v: isinstance(v, bool)))
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
        check_nested = getattr(config, "check_nested", None)
        if callable(check_nested) and registries is not None:
            try:
                check_nested(registries)
            except SettingsError as exc:
                raise _StructureError(str(exc), exc.keypath) from None
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
    check_nested = getattr(settings, "check_nested", None)
    if callable(check_nested) and registries is not None:
        try:
            check_nested(registries)
        except SettingsError as exc:
            raise _StructureError(str(exc), exc.keypath) from None
    return settings


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
