"""Pretraining at scale: peak memory, checkpoint size and step time as the number of sessions grows.

Runs `recipes/mm_large.yaml --overlay recipes/overlays/generated.yaml` (74 generated sessions,
offline) with the first N = 8, 32 and 74 sessions and a tiny model for one epoch, each in its own
process, once streaming every batch from the store (`train.cache_mb: 0`) and once with the default
in-memory session cache. Peak RSS is the training process's own (wait4). The point: memory must
not grow with the number of sessions beyond the cache budget, since batches are read lazily.

    python -m benchmarks.bench_scale            # N = 8, 32, 74
    python -m benchmarks.bench_scale --quick    # N = 2, 4, for CI

Writes benchmarks/results/scale.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._results import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
TINY = ["model.layers=1", "model.hidden=32", "model.heads=2", "model.ffn=64", "train.epochs=1", "train.batch_size=16",
        "train.validate_every=1", "train.progress=false", "train.threads=2", "stages=[prepare, train]"]


def run(workdir: Path, sets: list[str]) -> dict:
    cmd = [NEDS_RUN, str(ROOT / "recipes" / "mm_large.yaml"), "--overlay", str(ROOT / "recipes" / "overlays" / "generated.yaml")]
    for item in sets:
        cmd += ["--set", item]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        err.seek(0)
        text = err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{text[-3000:]}")
    return {"wall_s": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sizes = (2, 4) if args.quick else (8, 32, 74)
    from neds_framework.engine.record import RunRecord

    rows = []
    with tempfile.TemporaryDirectory(prefix="neds-bench-scale-") as tmp:
        workdir = Path(tmp)
        synth = f"data.source.synthesize={{sessions: {max(sizes)}, seed: 0}}"
        for n in sizes:
            prep = run(workdir, [synth, f"data.source.max_sessions={n}", "stages=[prepare]", "run.name=prep"])
            for cache in (0, 2048):
                name = f"n{n}_cache{cache}"
                r = run(workdir, [synth, f"data.source.max_sessions={n}", *TINY, f"train.cache_mb={cache}", f"run.name={name}"])
                record = RunRecord.load(workdir / "runs" / name)
                steps = int(record.history["step"]["step"][-1])
                rows.append({
                    "sessions": n, "cache_mb": cache, "prepare_s": prep["wall_s"], "train_wall_s": r["wall_s"],
                    "peak_rss_mb": r["peak_rss_mb"], "steps": steps,
                    "trials_per_s": float(record.history["epoch"]["trials_per_s"][-1]),
                    "data_wait_share": float(record.history["epoch"]["data_wait_share"][-1]),
                    "checkpoint_mb": len(record.checkpoints["last"]) / 2**20,
                    "run_h5_mb": (workdir / "runs" / name / "run.h5").stat().st_size / 2**20,
                    "parameters_m": sum(v.numel() for v in record.checkpoint("last")["model"].values()) / 1e6,
                })
                print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    report = {"benchmark": "scale", "quick": args.quick, "machine": machine(), "tiny_model": TINY, "rows": rows}
    lines = [
        "# Pretraining at scale: memory and checkpoint size vs sessions",
        "",
        "`recipes/mm_large.yaml` with `--overlay recipes/overlays/generated.yaml` (generated sessions, 300 trials, "
        "150 units before the 5 Hz filter), the first N sessions, a tiny model (1 layer, hidden 32), one epoch "
        f"with validation, one process per run. {report['machine']['cpu']}, {report['machine']['cpus']} CPUs, "
        f"torch {report['machine']['torch']}.",
        "",
        "| sessions | session cache | peak RSS (MiB) | steps | trials/s | data wait | checkpoint (MiB) | parameters (M) | run.h5 (MiB) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cache = "off (streaming)" if r["cache_mb"] == 0 else f"{r['cache_mb']} MiB"
        lines.append(
            f"| {r['sessions']} | {cache} | {r['peak_rss_mb']:.0f} | {r['steps']} | {r['trials_per_s']:.0f} | "
            f"{r['data_wait_share']:.1%} | {r['checkpoint_mb']:.1f} | {r['parameters_m']:.2f} | {r['run_h5_mb']:.1f} |"
        )
    lines.append("")
    text = "\n".join(lines)
    print(text)
    print(f"wrote {write_results('scale', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
