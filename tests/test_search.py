"""The search stage: Ray Tune trials over recipe keys, ASHA per validation, table and best recipe."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from neds_framework import cli
from neds_framework.engine.record import RunRecord
from neds_framework.errors import NedsError
from neds_framework.plugins import get_plugins
from neds_framework.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("fresh_plugins")  # plugins loaded per test (conftest)


def search_recipe(folder: Path, search: str) -> Path:
    path = folder / "search.yaml"
    path.write_text(textwrap.dedent(f"""
        extends: {ROOT / 'recipes' / 'common' / 'neds_mm.yaml'}
        stages: [prepare, search]
        run: {{dir: {folder / 'runs'}, seed: 3}}
        data:
          store: {folder / 'store.h5'}
          source:
            name: ibl
            one: {{mode: local, cache_dir: {folder / 'cache'}}}
            synthesize: {{sessions: 1, seed: 1, trials: 50, units: 16}}
        model: {{layers: 1, hidden: 16, heads: 2, ffn: 32}}
        train: {{epochs: 3, batch_size: 16, threads: 1, progress: false}}
        """) + textwrap.dedent(search))
    return path


def test_three_tiny_trials_write_a_table_and_the_best_recipe(tmp_path, capsys):
    pytest.importorskip("ray")
    path = search_recipe(tmp_path, """
        search:
          space:
            train.optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
            model.hidden: {choice: [8, 16]}
          samples: 3
          metric: val_loss
        """)
    assert cli.main([str(path)]) == 0
    run = tmp_path / "runs" / "search"
    table = RunRecord.load(run).results["search/trials"]
    assert len(table["trial"]) == 3
    scores = table["val_loss"]
    assert np.all(np.isfinite(scores)) and np.all(np.diff(scores) >= 0)  # best first
    assert set(table["model.hidden"].tolist()) <= {8, 16}
    assert np.all((1e-4 <= table["train.optimizer.lr"]) & (table["train.optimizer.lr"] <= 1e-2))
    assert np.all((1 <= table["reports"]) & (table["reports"] <= 3))  # one report per validation (ASHA may stop early)
    for trial in table["trial"]:
        assert (run / "trials" / trial / "run.h5").exists()  # each trial is a full run
    best = load_recipe(run / "best_recipe.yaml", registries=get_plugins().registries)
    assert best.stages == ("prepare", "train", "eval")
    assert best.model.config.hidden == table["model.hidden"][0]
    assert best.sections["train"].optimizer.lr == pytest.approx(table["train.optimizer.lr"][0])
    assert "search: 3 trial(s), best first" in capsys.readouterr().out


def test_search_without_ray_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    import neds_framework.engine.stages.search as search

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(NedsError, match=r"pip install -e '\.\[tune\]'"):
        search._ray()


@pytest.mark.parametrize("space,message", [
    ("{train.optimizer.lr: {gaussian: [0, 1]}}", "unknown distribution 'gaussian'"),
    ("{train.optimizer.lr: {uniform: [1]}}", "uniform takes a list of 2 values"),
    ("{data.source.bin_size: {choice: [0.01, 0.02]}}", "the search cannot vary 'data'"),
])
def test_bad_search_spaces_are_one_line_errors(tmp_path, capsys, space, message):
    path = search_recipe(tmp_path, f"search: {{space: {space}}}\n")
    assert cli.main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err
