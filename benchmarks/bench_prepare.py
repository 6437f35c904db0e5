"""Preparation speed: seconds and peak RSS to turn N IBL sessions into the prepared store.

The generated sessions are written first (untimed here; `neds-run synth` does the same), then
`neds-run RECIPE` with `stages: [prepare]` runs in a fresh process for N = 1 and N sessions, each
into a new store, through the real path: ONE in local mode, brainbox's trial tables and wheel, the
vectorised binning, the 5 Hz filter, HDF5 writing. Seconds per session = (t_N - t_1) / (N - 1),
which removes the process start and imports; peak RSS is each process's own (wait4).

    python -m benchmarks.bench_prepare            # N = 8
    python -m benchmarks.bench_prepare --quick    # N = 2, small sessions (CI)

Writes benchmarks/results/prepare.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from ._results import machine, write_results
from .bench_scale import run  # one mm_large + generated-overlay process, wall and peak RSS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    n = 2 if args.quick else 8
    size = ", trials: 60, units: 30" if args.quick else ""  # the default: 300 trials, 150 units
    synth = f"data.source.synthesize={{sessions: {n}, seed: 0{size}}}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="neds-bench-prepare-") as tmp:
        workdir = Path(tmp)
        generate = run(workdir, [synth, "data.source.max_sessions=1", "stages=[prepare]", "run.name=generate",
                                 "data.store=generate.h5"])
        for sessions in (1, n):
            r = run(workdir, [synth, f"data.source.max_sessions={sessions}", "stages=[prepare]",
                              f"run.name=prep{sessions}", f"data.store=prep{sessions}.h5"])
            rows.append({"sessions": sessions, **r, "store_mb": (workdir / f"prep{sessions}.h5").stat().st_size / 2**20})
            print(rows[-1], flush=True)
    per_session = (rows[1]["wall_s"] - rows[0]["wall_s"]) / (n - 1)
    report = {"benchmark": "prepare", "quick": args.quick, "machine": machine(), "rows": rows,
              "generate_and_prepare_1_s": generate["wall_s"], "seconds_per_session": per_session}
    m = report["machine"]
    lines = [
        "# Preparation speed",
        "",
        f"`neds-run recipes/mm_large.yaml --overlay recipes/overlays/generated.yaml` with `stages: [prepare]`, the first "
        f"N of {n} generated sessions ({'60 trials, 30 units' if args.quick else '300 trials, 150 units'} before the 5 Hz "
        f"filter), ONE in local mode, one fresh process and a new store per run. {m['cpu']}, {m['cpus']} CPUs, "
        f"torch {m['torch']}.",
        "",
        "| sessions | wall (s) | peak RSS (MiB) | store (MiB) |",
        "|---:|---:|---:|---:|",
        *(f"| {r['sessions']} | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['store_mb']:.1f} |" for r in rows),
        "",
        f"**{per_session:.2f} s per session** beyond the first ((t_{n} - t_1) / {n - 1}; the first includes the "
        f"process start and imports); {rows[1]['wall_s'] / n:.2f} s per session counting everything.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    print(f"wrote {write_results('prepare', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
