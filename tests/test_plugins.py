import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neds_framework.errors import NedsError, NedsRunError
from neds_framework.plugins import load_plugins, parse_selection
from neds_framework.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "tests" / "plugins" / "neds_example_plugin"


def fake_distribution(folder: Path, dist: str, plugins: dict[str, str], modules: dict[str, str]) -> Path:
    """A dist-info with entry points plus module files, as pip would leave them."""
    info = folder / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {target}" for name, target in plugins.items())
    (info / "entry_points.txt").write_text(f"[neds.plugins]\n{lines}\n")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))
    return folder


def test_builtin_plugins_come_through_entry_points():
    plugins = load_plugins(selection="")
    by_name = {p.name: p for p in plugins.plugins}
    assert "neds_ibl" in by_name
    assert by_name["neds_ibl"].distribution == "neds-framework"


def test_selection_parsing():
    assert parse_selection("") == (None, frozenset())
    assert parse_selection("a, b") == (frozenset({"a", "b"}), frozenset())
    assert parse_selection("-a") == (None, frozenset({"a"}))
    with pytest.raises(NedsError, match="mixes"):
        parse_selection("a,-b")


def test_selection_restricts_and_skips(tmp_path, monkeypatch):
    folder = fake_distribution(
        tmp_path,
        "extra-dist",
        {"extra_one": "extra_one"},
        {"extra_one": "from neds_framework import hookimpl\n@hookimpl\ndef neds_register_metrics(register):\n    register('one', object)\n"},
    )
    monkeypatch.syspath_prepend(str(folder))
    assert {p.name for p in load_plugins(selection="extra_one").plugins} == {"extra_one"}
    assert "extra_one" not in {p.name for p in load_plugins(selection="-extra_one").plugins}
    loaded = load_plugins(selection="")
    entry = loaded.registries.metrics.get("one")
    assert (entry.provider.plugin, entry.provider.distribution, entry.provider.version) == ("extra_one", "extra-dist", "0.1")
    with pytest.raises(NedsError, match="not installed: nope"):
        load_plugins(selection="nope")


def test_environment_variable_selects(monkeypatch):
    monkeypatch.setenv("NEDS_PLUGINS", "-neds_ibl")
    assert "neds_ibl" not in {p.name for p in load_plugins().plugins}


def test_plugin_that_fails_to_import_is_named(tmp_path, monkeypatch):
    folder = fake_distribution(tmp_path, "broken-dist", {"broken": "broken_mod"}, {"broken_mod": "raise ImportError('no numpy 9')\n"})
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(NedsRunError) as err:
        load_plugins(selection="")
    msg = str(err.value)
    assert "plugin 'broken'" in msg and "broken-dist" in msg and "no numpy 9" in msg and "NEDS_PLUGINS=-broken" in msg
    assert "broken" not in {p.name for p in load_plugins(selection="-broken").plugins}


def test_two_plugins_registering_one_name(tmp_path, monkeypatch):
    src = "from neds_framework import hookimpl\n@hookimpl\ndef neds_register_maskers(register):\n    register('temporal', object)\n"
    folder = fake_distribution(tmp_path, "twin-dist", {"twin_a": "twin_a", "twin_b": "twin_b"}, {"twin_a": src, "twin_b": src})
    monkeypatch.syspath_prepend(str(folder))
    with pytest.raises(NedsError) as err:
        load_plugins(selection="twin_a,twin_b")
    assert "masker 'temporal' is registered twice" in str(err.value)
    assert "twin_a" in str(err.value) and "twin_b" in str(err.value)


def test_hook_that_raises_is_reported_with_its_plugin(tmp_path, monkeypatch):
    src = "from neds_framework import hookimpl\n@hookimpl\ndef neds_register_heads(register):\n    raise RuntimeError('oops')\n"
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path, "bad-hook", {"bad_hook": "bad_hook"}, {"bad_hook": src})))
    with pytest.raises(NedsRunError, match="plugin 'bad_hook'.*neds_register_heads: RuntimeError: oops"):
        load_plugins(selection="bad_hook")


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory) -> Path:
    """The example third-party plugin, really pip-installed into a target folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(EXAMPLE)],
        check=True,
        capture_output=True,
    )
    return target


def neds_run(*args, pythonpath: Path | None = None, cwd=None):
    env = dict(__import__("os").environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(Path(sys.executable).with_name("neds-run")), *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_pip_installed_plugin_is_discovered_listed_and_usable(installed_example, tmp_path, monkeypatch):
    listing = neds_run("plugins", pythonpath=installed_example)
    assert listing.returncode == 0, listing.stderr
    assert "neds_example" in listing.stdout
    line = next(l for l in listing.stdout.splitlines() if "example_mae" in l)
    assert "neds-example-plugin 0.0.1" in line

    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: []\nmetrics:\n  - {name: example_mae, scale: 2.0}\n")
    assert neds_run("validate", str(recipe), pythonpath=installed_example).returncode == 0
    missing = neds_run("validate", str(recipe))
    assert missing.returncode == 2 and "unknown metric 'example_mae'" in missing.stderr

    # In process: the recipe section is structured by the plugin's own settings class.
    monkeypatch.syspath_prepend(str(installed_example))
    plugins = load_plugins(selection="")
    spec = load_recipe(recipe, registries=plugins.registries).metrics[0]
    metric = plugins.registries.metrics.get(spec.name).factory(spec.config)
    assert metric([1.0, 3.0], [2.0, 2.0]) == {"mae": 2.0}
