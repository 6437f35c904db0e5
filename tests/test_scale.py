"""mm_large on 74 generated sessions (the overlay), with a tiny model for a few steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from neds_framework.engine.record import RunRecord

ROOT = Path(__file__).resolve().parents[1]
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))


def test_mm_large_runs_on_74_generated_sessions(tmp_path):
    sets = [
        "data.source.synthesize={sessions: 74, seed: 0, trials: 30, units: 12}",
        "model.layers=1", "model.hidden=16", "model.heads=2", "model.ffn=32",
        "train.max_steps=6", "train.batch_size=8", "train.progress=false", "train.threads=1",
        "stages=[prepare, train]",
    ]
    cmd = [NEDS_RUN, str(ROOT / "recipes" / "mm_large.yaml"), "--overlay", str(ROOT / "recipes" / "overlays" / "generated.yaml")]
    for item in sets:
        cmd += ["--set", item]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    record = RunRecord.load(tmp_path / "runs" / "mm_large_generated")
    sessions = record.meta_value("model_sessions")
    assert len(sessions) == 74  # per-session layers for every session
    state = record.checkpoint("last")
    assert state["step"] == 6
    keys = state["model"].keys()
    assert all(any(eid in k for k in keys) for eid in sessions)
    assert len(record.checkpoints["last"]) < 20 * 2**20  # a tiny model with 74 sessions' layers stays small
