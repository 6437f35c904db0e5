"""The quickstart recipe, exactly as a newcomer runs it, end to end (generate, prepare, train, eval)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))


def test_quickstart_runs_end_to_end_and_prints_the_metrics_table(tmp_path):
    done = subprocess.run(
        [NEDS_RUN, str(ROOT / "recipes" / "quickstart.yaml"), "--set", "train.progress=false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in ("encoding  spikes    bps", "oracle    spikes    bps", "decoding  wheel     r2",
                "decoding  choice    accuracy", "decoding  block     balanced_accuracy"):
        assert row in out, out
    run = tmp_path / "runs" / "quickstart"
    assert (run / "run.h5").exists() and (run / "figures" / "training_curves.png").exists()
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    values = {line.split()[2]: float(line.split()[3]) for line in out.splitlines() if line.startswith("decoding  choice")}
    assert values["accuracy"] > 0.6  # it learned something in a few minutes
    inspect = subprocess.run([NEDS_RUN, "inspect", str(run)], capture_output=True, text=True)
    assert inspect.returncode == 0 and "oracle    spikes    bps" in inspect.stdout
