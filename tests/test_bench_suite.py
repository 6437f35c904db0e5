"""The benchmark suite's quick mode: it runs, writes its table, CSV and plot, and the numbers are sane."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_suite_writes_a_sane_quality_table(tmp_path):
    out = tmp_path / "suite"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--skip-speed", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    text = (out / "quality.md").read_text()
    assert "Sanity: ok" in text and "Region probe" in text
    for arm in ("neds (expanded)", "neds (compact)", "neds (multi)", "ridge_decoder", "rrr_encoder", "glm_encoder", "oracle"):
        assert f"| {arm} |" in text, arm
    rows = list(csv.DictReader((out / "quality.csv").open()))
    present = [r for r in rows if int(r["n"]) > 0]
    assert present and all(math.isfinite(float(r["mean"])) for r in present)
    bps = {r["model"]: float(r["mean"]) for r in present if r["metric"] == "encoding/spikes/bps"}
    assert all(v <= bps["oracle"] for v in bps.values())
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
