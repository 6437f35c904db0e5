"""CONTRIBUTING.md's plugin code, run as written: every Python block becomes a plugin package
(named by its first line, ``# <package>/__init__.py``), and one run goes through prepare, train
and eval with all of them, so each example is proven through the eval table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import tiny_recipe

ROOT = Path(__file__).resolve().parents[1]


def python_blocks() -> dict[str, str]:
    """package -> source of each ```python block of CONTRIBUTING.md."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    out = {}
    for block in text.split("```python\n")[1:]:
        code = block.split("```")[0]
        first = code.splitlines()[0]
        assert first.startswith("# ") and first.endswith("/__init__.py"), f"name the package on a block's first line: {first!r}"
        out[first[2 : -len("/__init__.py")]] = code
    return out


def test_every_contributing_example_runs_through_eval(tmp_path):
    blocks = python_blocks()
    assert set(blocks) == {"my_plugin", "my_pupil", "first_bins", "scores_csv"}
    site = tmp_path / "site"
    for package, code in blocks.items():
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text(code)
    info = site / "contributing_examples-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: contributing-examples\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neds.plugins]\n" + "".join(f"{p} = {p}\n" for p in blocks))

    recipe = tiny_recipe(tmp_path, "examples", sessions=1, synth_seed=6, trials=80, model="{layers: 1, hidden: 32, heads: 4, ffn: 64}",
                         extra="""
        modalities:
          pupil: {tokenizer: pupil, head: {name: pupil_huber, delta: 0.5}, weight: 1.0}
        masker: {name: mixture, schemes: {neds_multitask: 0.8, first_bins: 0.2}, options: {first_bins: {bins: 3}}}
        metrics: [{name: mae, scale: 2.0}, r2, bits_per_spike, accuracy]
        eval: {figures: false, reporters: [figures, scores_csv, tensorboard]}
        """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    done = subprocess.run([str(Path(sys.executable).with_name("neds-run")), str(recipe)], capture_output=True,
                          text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]

    from neds_framework.engine.record import read_table
    from neds_framework.engine.record import RunRecord

    rows = read_table(RunRecord.load(tmp_path / "runs" / "examples"))
    got = {(task, modality, metric): value for _, task, modality, metric, value in rows}
    scores = (tmp_path / "runs" / "examples" / "scores_test.csv").read_text().splitlines()
    assert scores[0] == "task,modality,metric,mean,sem,sessions" and any(",pupil,mae," in line for line in scores)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "runs" / "examples" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    assert "scores/bps" in events.Tags()["images"]  # the tensorboard reporter logged the plugin's figure
    for key in [("decoding", "pupil", "mae"), ("decoding", "pupil", "r2"), ("decoding", "wheel", "mae"),
                ("decoding", "choice", "accuracy"), ("encoding", "spikes", "bps")]:
        assert key in got, (key, sorted(got))
