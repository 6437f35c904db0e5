"""Quickstart end to end: wall time per stage, peak memory, and the share of training spent waiting for data.

Runs `neds-run recipes/quickstart.yaml` in a fresh folder, as a newcomer would (generate the
synthetic sessions, prepare them, train, evaluate), one stage per process so each is timed and
its peak RSS measured alone. Then trains again with the in-memory session cache off
(`train.cache_mb=0`: every batch read and decompressed from the HDF5 store) to show what the
cache buys. Data wait = time the loop spends getting the next batch / time of the whole step.

    python -m benchmarks.bench_quickstart            # the recipe as shipped
    python -m benchmarks.bench_quickstart --quick    # 2 epochs, for CI

Writes benchmarks/results/quickstart.{json,md} (the quick run writes *_quick.*). Target: data
wait < 5 % of step time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ._results import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "quickstart.yaml"
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
TARGET_DATA_WAIT = 0.05


def run_stage(workdir: Path, stage: str, sets: list[str]) -> dict:
    """One stage in its own process: wall time and that process's peak RSS."""
    cmd = [NEDS_RUN, str(RECIPE), "--set", f"stages=[{stage}]", "--set", "train.progress=false"]
    for item in sets:
        cmd += ["--set", item]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not the running maximum
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"stage {stage} failed:\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024, "stdout": stdout}


def training_stats(run_dir: Path) -> dict:
    from neds_framework.engine.record import RunRecord

    epochs = RunRecord.load(run_dir).history["epoch"]
    wait = np.asarray(epochs["data_wait_share"])
    speed = np.asarray(epochs["trials_per_s"])
    return {
        "epochs": len(wait),
        "data_wait_share_mean": float(wait.mean()),
        "data_wait_share_max": float(wait.max()),
        "trials_per_s_median": float(np.median(speed)),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Quickstart end to end",
        "",
        f"`neds-run recipes/quickstart.yaml` in a fresh folder ({report['epochs']} epochs), one stage per process. "
        f"{m['cpu']}, {m['cpus']} CPUs, torch {m['torch']}.",
        "",
        "| stage | wall (s) | peak RSS (MiB) |",
        "|---|---:|---:|",
    ]
    for stage, r in report["stages"].items():
        lines.append(f"| {stage} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} |")
    lines += [f"| **total** | **{report['total_s']:.1f}** | |", "", "Training loop, per epoch:", "",
              "| session cache | trials/s (median) | data wait (mean) | data wait (worst epoch) |", "|---|---:|---:|---:|"]
    for name, t in report["training"].items():
        lines.append(f"| {name} | {t['trials_per_s_median']:.1f} | {t['data_wait_share_mean']:.1%} | {t['data_wait_share_max']:.1%} |")
    lines += ["", f"Target: data wait < {TARGET_DATA_WAIT:.0%} of step time with the defaults "
              f"({'met' if report['target_met'] else 'NOT met'}).", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, for CI")
    args = parser.parse_args(argv)
    sets = ["train.epochs=2"] if args.quick else []
    with tempfile.TemporaryDirectory(prefix="neds-bench-quickstart-") as tmp:
        workdir = Path(tmp)
        stages = {}
        for stage in ("prepare", "train", "eval"):
            stages[stage] = run_stage(workdir, stage, sets)
            print(f"{stage:8s} {stages[stage]['wall_s']:7.1f} s", flush=True)
        table = stages["eval"].pop("stdout")
        for r in stages.values():
            r.pop("stdout", None)
        training = {"on (default 2048 MiB)": training_stats(workdir / "runs" / "quickstart")}
        nocache = run_stage(workdir, "train", sets + ["train.cache_mb=0", "run.name=nocache"])
        training["off (cache_mb: 0)"] = training_stats(workdir / "runs" / "nocache")
        print(f"train without cache {nocache['wall_s']:7.1f} s", flush=True)
    default = training["on (default 2048 MiB)"]
    report = {
        "benchmark": "quickstart",
        "quick": args.quick,
        "machine": machine(),
        "epochs": default["epochs"],
        "stages": stages,
        "total_s": sum(r["wall_s"] for r in stages.values()),
        "training": training,
        "train_without_cache_s": nocache["wall_s"],
        "target_data_wait": TARGET_DATA_WAIT,
        "target_met": default["data_wait_share_mean"] < TARGET_DATA_WAIT,
        "metrics_table": table,
    }
    text = markdown(report) + "\nThe metrics table the run printed:\n\n```\n" + table.strip() + "\n```\n"
    print(text)
    print(f"wrote {write_results('quickstart', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
