"""Issue #15: a property-based fuzz over recipe structures. Whatever a recipe holds (wrong types,
odd nesting, unknown keys, values of any shape at any depth), `validate` answers with exit code 0
or 2 and, when it refuses, one line; never a traceback and never "unexpected error"."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neds_framework import cli
from neds_framework.plugins import get_plugins
from neds_framework.recipe import dump_recipe, load_recipe

ROOT = Path(__file__).resolve().parents[1]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.sampled_from(["ibl", "neds", "temporal", "spikes", "prepare", "1e9", ".nan", "-1"]),
)
keys = st.one_of(st.text(max_size=8), st.sampled_from(["name", "weight", "head", "ratio", "epochs", "hidden", "seed"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def resolved():
    """The quickstart recipe with every default filled in: the tree the fuzz mutates."""
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", [], get_plugins().registries)
    return yaml.safe_load(dump_recipe(recipe))


def _paths(tree, prefix=()):
    yield prefix
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _paths(value, (*prefix, i))


def _replace(tree, path, value):
    if not path:
        return value
    node = tree
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return tree


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_validate_never_shows_a_traceback(resolved, tmp_path, capsys, data):
    tree = copy.deepcopy(resolved)
    paths = list(_paths(tree))
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        how = data.draw(st.sampled_from(["replace", "add key", "delete"]), label="how")
        try:
            if how == "replace":
                tree = _replace(tree, path, data.draw(values, label="value"))
            elif how == "add key":
                node = tree
                for key in path:
                    node = node[key]
                if isinstance(node, dict):
                    node[data.draw(keys, label="key")] = data.draw(values, label="value")
            elif path:
                node = tree
                for key in path[:-1]:
                    node = node[key]
                del node[path[-1]]
        except (KeyError, IndexError, TypeError):
            pass  # the path left the tree an earlier mutation reshaped
        paths = list(_paths(tree))
    recipe = tmp_path / "fuzz.yaml"
    recipe.write_text(yaml.safe_dump(tree, allow_unicode=True))
    code = cli.main(["validate", str(recipe)])
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "unexpected error" not in err and "Traceback" not in err
    assert code == 0 or err.count("\n") == 1, err
