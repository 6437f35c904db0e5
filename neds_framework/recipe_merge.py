"""Reading recipes: YAML files, their ``extends:`` bases, overlays and ``--set`` overrides, merged
into one dictionary that remembers where each key came from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import yaml

from neds_framework.errors import NedsError
from neds_framework.recipe_schema import KeyPath

SET_ORIGIN = "--set"


class RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false are booleans. PyYAML follows
    YAML 1.1, where off/on/yes/no/y/n are booleans too, so ``amp: off`` would reach a string
    setting as False and be refused."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def load_yaml(text: str) -> Any:
    """Parse recipe YAML text (safe: plain data only; YAML 1.2 booleans, see `RecipeLoader`)."""
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - RecipeLoader is a SafeLoader


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
        data = load_yaml(text)
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
        if isinstance(value, dict) and isinstance(base.get(key), dict) and not _switches_plugin(path, base[key], value):
            merged[key], origins = _merge(base[key], value, origins, top_origins, path)
        else:
            merged[key] = value
            # Whatever the base said under this key no longer applies.
            origins = {p: o for p, o in origins.items() if p[: len(path)] != path}
            origins.update({p: o for p, o in top_origins.items() if p[: len(path)] == path})
        origins[path] = top_origins.get(path, top_origins[()])
    return merged, origins


#: Sections whose ``name`` is a plain setting, not the plugin the section selects.
NAMED_SETTINGS = (("run",),)


def _switches_plugin(path: KeyPath, base: dict, top: dict) -> bool:
    """A plugin section naming another plugin replaces the base section whole: the base's
    settings belong to the plugin it named and would be unknown keys to the new one. ``run``'s
    name is the run's, so ``run: {name: X}`` keeps the base's dir and seed."""
    if path in NAMED_SETTINGS:
        return False
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
            value = load_yaml(text)
        except yaml.YAMLError as exc:
            raise NedsError(f"--set {item!r}: the value is not valid YAML: {getattr(exc, 'problem', exc)}") from None
        patch: Any = value
        for k in reversed(keys):
            patch = {k: patch}
        data, origins = _merge(data, patch, origins, {(): f"{SET_ORIGIN} {key}"})
    return RawRecipe(data=data, origins=origins, path=raw.path)
