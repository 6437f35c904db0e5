import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neds_framework import cli
from tests.test_plugins import fake_distribution

NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))

STAGE_PLUGIN = """
import attrs
from pathlib import Path
from neds_framework.api import Masker, hookimpl

@attrs.frozen
class EchoSettings:
    message: str = "hi"

def echo(context):
    (context.run_dir / "echo.txt").write_text(context.recipe.section("echo").message)

@hookimpl
def neds_register_stages(register):
    register("echo", echo, settings=EchoSettings)

class EchoMasker(Masker):
    def __call__(self, batch, generator):
        return {name: batch.full_mask(name, False) for name in batch.values}

@hookimpl
def neds_register_maskers(register):
    register("echo_masker", EchoMasker)
"""


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


@pytest.fixture
def with_stage(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(fake_distribution(tmp_path / "site", "echo-dist", {"echo": "echo_plugin"}, {"echo_plugin": STAGE_PLUGIN})))


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "echo.yaml"
    path.write_text(f"stages: [echo]\nrun: {{dir: {tmp_path / 'runs'}}}\necho: {{message: hello}}\nmasker: echo_masker\n")
    return path


def test_run_dispatches_stages_in_a_run_folder(with_stage, recipe, tmp_path):
    assert cli.main([str(recipe), "--set", "echo.message=bye"]) == 0
    run_dir = tmp_path / "runs" / "echo"
    assert (run_dir / "echo.txt").read_text() == "bye"
    saved = yaml.safe_load((run_dir / "recipe.yaml").read_text())
    assert saved["echo"] == {"message": "bye"} and saved["stages"] == ["echo"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temp files left


def test_stage_nobody_provides(recipe, capsys):
    assert cli.main([str(recipe)]) == 2
    err = capsys.readouterr().err
    assert "stages[0]: unknown stage 'echo'" in err or "echo: unknown key" in err
    assert err.count("\n") == 1


def test_validate_and_dump(with_stage, recipe, capsys):
    assert cli.main(["validate", str(recipe)]) == 0
    assert "ok" in capsys.readouterr().out
    assert cli.main(["validate", str(recipe), "--dump"]) == 0
    dumped = yaml.safe_load(capsys.readouterr().out)
    assert dumped["echo"]["message"] == "hello" and dumped["run"]["seed"] == 0


def test_plugins_listing(with_stage, capsys):
    assert cli.main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "neds_ibl" in out and "neds-framework" in out
    assert any("echo" in line and "echo-dist 0.1" in line for line in out.splitlines())


def test_help_and_unknown_command(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "validate" in out and "plugins" in out
    assert cli.main([]) == 2
    assert cli.main(["frobnicate"]) == 2
    assert "neither a command nor a recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["validate", "--help"])
    assert exit_.value.code == 0


BAD_RECIPES = {
    "unknown key": ("stages: []\nrun: {sede: 1}\n", "run.sede: unknown key; did you mean 'seed'?"),
    "wrong type": ("stages: []\nrun: {seed: one}\n", "run.seed: expected int, got 'one'"),
    "unknown plugin": ("stages: []\nmetrics: [no_such_metric]\n", "metrics[0].name: unknown metric 'no_such_metric'"),
    "missing extends": ("extends: gone.yaml\nstages: []\n", "extends: file"),
    "yaml syntax": ("stages: [a\nrun: {\n", "YAML syntax error"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_validate_rejects_bad_recipes_with_one_line(tmp_path, case):
    text, expected = BAD_RECIPES[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    proc = subprocess.run([NEDS_RUN, "validate", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(path) in proc.stderr and expected in proc.stderr


def test_module_entry_point_runs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neds_framework.cli", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and "neds-framework" in proc.stdout


@pytest.mark.parametrize("setting, message", [
    ("train.batch_size=0", "train.batch_size: 'batch_size' must be >= 1"),
    ("train.epochs=-1", "train.epochs: 'epochs' must be >= 1"),
    ("train.optimizer.lr=-1", "train.optimizer.lr: 'lr' must be > 0.0"),
    ("train.optimizer.lr=.nan", "train.optimizer.lr: 'lr' must be > 0.0: nan"),
    ("train.optimizer.lr=.inf", "train.optimizer.lr: 'lr' must be < inf"),
    ("model.layers=100000", "model.layers: 'layers' must be <= 1000"),
    ("eval.heldout_fraction=1.5", "eval.heldout_fraction: 'heldout_fraction' must be <= 1.0"),
])
def test_validate_checks_numeric_ranges(setting, message, capsys):
    """Issue #15: nonsense numbers are refused by validate, naming the key, not at run time."""
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    assert cli.main(["validate", str(recipe), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
