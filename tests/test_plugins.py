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
        {"extra_one": "from neds_framework.api import hookimpl\n@hookimpl\ndef neds_register_stages(register):\n    register('one', print)\n"},
    )
    monkeypatch.syspath_prepend(str(folder))
    assert {p.name for p in load_plugins(selection="extra_one").plugins} == {"extra_one"}
    assert "extra_one" not in {p.name for p in load_plugins(selection="-extra_one").plugins}
    loaded = load_plugins(selection="")
    entry = loaded.registries.stages.get("one")
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
    src = ("from neds_framework.api import Masker, hookimpl\nclass Twin(Masker):\n    def __call__(self, batch, generator):\n"
           "        return {}\n@hookimpl\ndef neds_register_maskers(register):\n    register('temporal', Twin)\n")
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
    if pythonpath is not None:  # in front of what is there (a source checkout under test, say)
        env["PYTHONPATH"] = __import__("os").pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
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


@pytest.mark.parametrize(
    "kind, factory, missing",
    [
        ("metrics", type("NoKind", (), {"__call__": lambda self, p, t, conditions=None: {}}), "a str attribute 'kind'"),
        ("tokenizers", object, "a subclass of neds_framework.api.Tokenizer"),
        ("heads", dict, "a subclass of neds_framework.api.Head"),
        ("maskers", object, "a subclass of neds_framework.api.Masker"),
        ("data_sources", type("Half", (), {"eids": lambda self: []}), "'prepare' (DataSource interface)"),
        ("commands", type("NoRun", (), {"help": "x", "add_arguments": staticmethod(print)}), "'run' (Command interface)"),
        ("modalities", {"role": "neural"}, "a ModalitySpec"),
        ("stages", 3, "to be callable"),
    ],
)
def test_a_registration_that_misses_its_interface_fails_at_load_naming_it(tmp_path, monkeypatch, kind, factory, missing):
    """Every registry checks its interface (neds_framework.contracts) when a plugin registers."""
    sys.modules.pop("bad_iface", None)
    module = tmp_path / "bad_iface.py"
    module.write_text(f"from neds_framework.api import hookimpl\nTHING = None\n@hookimpl\ndef neds_register_{kind}(register):\n    register('thing', THING)\n")
    folder = fake_distribution(tmp_path, "iface-dist", {"bad_iface": "bad_iface"}, {})
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    bad = importlib.import_module("bad_iface")
    monkeypatch.setattr(bad, "THING", factory)
    with pytest.raises(NedsError) as err:
        load_plugins(selection="bad_iface")
    message = str(err.value)
    assert "plugin 'bad_iface'" in message and "'thing'" in message and missing in message, message
    sys.modules.pop("bad_iface", None)


def test_a_third_party_modality_runs_prepare_train_eval(installed_example, tmp_path):
    """The pip-installed example plugin declares pupil (per bin) and reward (per trial); the
    simulator writes the pupil through the plugin's hook, the ibl source reads both, and the
    model trains on them and the eval table scores them, the plugin's own metric included."""
    from neds_framework.engine.record import read_table
    from neds_framework.engine.record import RunRecord

    from tests.helpers import tiny_recipe

    recipe = tiny_recipe(tmp_path, "pupil", sessions=1, synth_seed=4, trials=80, model="{layers: 1, hidden: 32, heads: 4, ffn: 64}",
                         extra="""
        modalities:
          pupil: {tokenizer: dynamic, head: regression}
          reward: {tokenizer: {name: static, layout: expanded}, head: {name: classification, n_classes: 2}}
        metrics: [{name: example_mae, scale: 1.0}, r2, accuracy, bits_per_spike]
        eval: {figures: false, tensorboard: false}
        """)
    done = neds_run(str(recipe), pythonpath=installed_example, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_table(RunRecord.load(tmp_path / "runs" / "pupil"))
    got = {(task, modality, metric) for _, task, modality, metric, _ in rows}
    for key in [("decoding", "pupil", "r2"), ("decoding", "pupil", "mae"), ("decoding", "reward", "accuracy"),
                ("decoding", "wheel", "mae"), ("encoding", "spikes", "bps")]:
        assert key in got, (key, sorted(got))
    # Without the plugin, a recipe naming its modalities is refused at the key that names one.
    bare = tmp_path / "bare.yaml"
    bare.write_text("\n".join(line for line in recipe.read_text().splitlines() if not line.strip().startswith("metrics:")))
    missing = neds_run("validate", str(bare), cwd=tmp_path)
    assert missing.returncode == 2 and "modalities.pupil: unknown modality 'pupil'" in missing.stderr
