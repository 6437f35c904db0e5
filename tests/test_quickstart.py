"""The quickstart recipe, exactly as a newcomer runs it, end to end (generate, prepare, train, eval)."""

from __future__ import annotations

import re
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
    for row in ("encoding spikes bps", "oracle spikes bps", "oracle_behaviour spikes bps", "decoding wheel r2",
                "decoding choice accuracy", "decoding block balanced_accuracy"):
        assert re.search("^" + row.replace(" ", " +") + " ", out, re.M), (row, out)
    run = tmp_path / "runs" / "quickstart"
    assert (run / "run.h5").exists() and (run / "figures" / "training_curves.png").exists()
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    card = (run / "MODEL_CARD.md").read_text()  # the model card every evaluation writes
    assert "# Model card: quickstart" in card and "| encoding | spikes | bps |" in card and (run / "bwb_metadata.json").exists()
    score = {tuple(line.split()[:3]): float(line.split()[3]) for line in out.splitlines() if len(line.split()) >= 4
             and re.match(r"^-?[0-9.]+$", line.split()[3])}
    # What the README promises a newcomer: past the mean-rate plateau, and the wheel decoded.
    assert score[("encoding", "spikes", "bps")] > 0, out
    assert score[("decoding", "wheel", "r2")] >= 0.5, out
    assert score[("oracle_behaviour", "spikes", "bps")] <= score[("oracle", "spikes", "bps")]
    inspect = subprocess.run([NEDS_RUN, "inspect", str(run)], capture_output=True, text=True)
    assert inspect.returncode == 0 and re.search("^oracle +spikes +bps ", inspect.stdout, re.M)
