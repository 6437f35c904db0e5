"""The benchmark suite's quick mode: it runs, writes its table, CSV and plot, and the numbers are sane."""

from __future__ import annotations

import csv
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_suite_writes_a_sane_quality_table(tmp_path):
    out = tmp_path / "suite"
    env = {**os.environ, "NEDS_BENCH_RESULTS": str(tmp_path / "results")}  # nothing of the repo's results is read
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--skip-speed", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500, env=env)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    text = (out / "quality.md").read_text()
    assert "Sanity: ok" in text and "Region probe" in text and "Targets (issue #13)" in text
    assert "The reference: not run" in text  # no checkout given: our rows only, and it says so
    for arm in ("neds single", "neds multi", "ridge_decoder", "rrr_encoder", "glm_encoder", "oracle", "oracle behaviour"):
        assert f"| {arm} |" in text, arm
    assert "| reference |" not in text
    assert "Matched pairs" in text
    rows = list(csv.DictReader((out / "quality.csv").open()))
    present = [r for r in rows if int(r["n"]) > 0]
    assert present and all(math.isfinite(float(r["mean"])) for r in present)
    bps = {r["model"]: float(r["mean"]) for r in present if r["metric"] == "encoding/spikes/bps"}
    assert all(v <= bps["oracle"] for v in bps.values())
    assert bps["oracle behaviour"] <= bps["oracle"]
    for png in ("quality.png", "bps_vs_oracle.png", "learning_curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def _suite_modules():
    import importlib

    return importlib.import_module("benchmarks.__main__"), importlib.import_module("benchmarks.plots")


def test_speed_overview_and_plots_render_the_committed_results(tmp_path):
    suite, plots = _suite_modules()
    text = suite.speed_overview(quick=False)
    for row in ("| spike binning |", "| preparation |", "| training step, single size, defaults (", "| quickstart end to end |",
                "| large (reference): train / eval forward |", "| training on 74 sessions, streaming |"):
        assert row in text, row
    per_neuron = {"neds (expanded)": {"model": [0.1, -3.0, float("nan")], "oracle": [0.2, 0.1, 0.3]}}
    drawn = plots.draw_all(suite.RESULTS, tmp_path, per_neuron)
    assert sorted(p.name for p in drawn) == ["bps_vs_oracle.png", "model_size.png", "pretrain_sessions.png", "rss_sessions.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in drawn)


def test_skip_quality_without_an_earlier_run_says_what_to_do(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--skip-quality", "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "no " in done.stderr and "quality.json" in done.stderr and "Traceback" not in done.stderr


def test_a_kept_workdir_reuses_finished_runs_of_the_same_recipe_and_code(tmp_path, monkeypatch):
    """`--workdir`: a run that finished (its `.done` marker holds its recipe and the code's hash)
    is not repeated; another recipe, or an unfinished run, runs again from nothing."""
    from benchmarks import quality

    calls = []

    def fake_run(cmd, cwd, **kwargs):
        recipe = quality.yaml.safe_load(Path(cmd[1]).read_text())
        run_dir = Path(cwd) / "runs" / recipe["run"]["name"]
        assert not (run_dir / "partial").exists(), "an unfinished run must start again from nothing"
        run_dir.mkdir(parents=True, exist_ok=True)
        calls.append(recipe["train"]["epochs"])
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(quality.subprocess, "run", fake_run)
    recipe = {"stages": ["train"], "train": {"epochs": 3}}
    first = quality._neds_run(tmp_path, "single_s0_0", recipe)
    assert quality._neds_run(tmp_path, "single_s0_0", recipe) == first and calls == [3]
    quality._neds_run(tmp_path, "single_s0_0", {"stages": ["train"], "train": {"epochs": 4}})
    assert calls == [3, 4]
    (tmp_path / "single_s0_0.done").unlink()  # killed before it finished: its folder is stale
    (first / "partial").write_text("")
    quality._neds_run(tmp_path, "single_s0_0", {"stages": ["train"], "train": {"epochs": 4}})
    assert calls == [3, 4, 4]
    marker = (tmp_path / "single_s0_0.done").read_text()
    assert quality.code_version() in marker and "epochs: 4" in marker
