"""Quality parity of the speed levers: `neds single` of the quality suite with each lever on and off.

The same generated sessions, splits, seeds and recipe as the suite's `neds single` arm
(benchmarks/quality.py), trained and evaluated once per arm:

    fp32               train.amp off, eval.amp off (no reduced precision anywhere)
    defaults           train.amp auto, eval.amp auto (bf16 autocast where the CPU has native bf16)
    compact            the defaults with one token per static modality (choice, block), a lever that is off by default

Each arm is scored as in the suite (mean ± s.e.m. over sessions × seeds, test split), and every
arm against fp32 on the same (session, seed) pairs (mean paired difference ± its s.e.m.). An arm
is at parity on a metric when its mean lies within the larger of the two arms' s.e.m. of fp32's.

    python -m benchmarks.precision_parity            # 4 sessions x 2 seeds per arm: about an hour on 2 cores
    python -m benchmarks.precision_parity --quick    # smoke run

Writes benchmarks/results/precision_parity.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ._results import machine, write_results
from .quality import COLUMNS, FULL, QUICK, _neds_run, _rows, mean_sem, prepare_sessions, single_session_recipe

ARMS = {
    "fp32": {"train": {"amp": "off"}, "eval": {"amp": "off"}},
    "defaults": {},
    "compact": {"modalities": {"choice": {"tokenizer": {"name": "static", "layout": "compact"}},
                               "block": {"tokenizer": {"name": "static", "layout": "compact"}}}},
}
BASE = "fp32"


def run(workdir: Path, quick: bool, seeds: list[int], arms: list[str]) -> dict:
    p = {**(QUICK if quick else FULL), "seeds": seeds}
    eids = prepare_sessions(workdir, p, pool=False)
    jobs = {}
    for arm in arms:
        for seed in seeds:
            for i, eid in enumerate(eids):
                jobs[(arm, seed, i)] = (f"{arm}_s{seed}_{i}", single_session_recipe(p, seed, i, eid, **ARMS[arm]))
    threads = max(1, 2 // p["jobs"])
    with ThreadPoolExecutor(max_workers=p["jobs"]) as pool:
        done = {key: pool.submit(_neds_run, workdir, *job, threads) for key, job in jobs.items()}
        run_dirs = {key: f.result() for key, f in done.items()}
    scores: dict[str, dict[str, list[float]]] = {}  # arm -> column -> values in (seed, session) order
    for (arm, seed, i), run_dir in sorted(run_dirs.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        for _, task, modality, metric, value in _rows(run_dir):
            if (task, modality, metric) in COLUMNS:
                scores.setdefault(arm, {}).setdefault("/".join((task, modality, metric)), []).append(float(value))
    return {"params": {k: p[k] for k in ("sessions", "trials", "units", "epochs", "layers", "hidden", "lr")},
            "seeds": seeds, "sessions": len(eids), "arms": {a: ARMS[a] for a in arms}, "scores": scores}


def compare(scores: dict) -> dict:
    """Per arm and column: mean, s.e.m., paired difference from fp32 and whether it is at parity."""
    out = {}
    base = scores.get(BASE, {})
    for arm, columns in scores.items():
        for column, values in columns.items():
            mean, sem, n = mean_sem(values)
            row = {"mean": mean, "sem": sem, "n": n}
            if arm != BASE and column in base and len(base[column]) == len(values):
                diffs = [a - b for a, b in zip(values, base[column]) if math.isfinite(a) and math.isfinite(b)]
                b_mean, b_sem, _ = mean_sem(base[column])
                row["paired_diff"] = statistics.fmean(diffs) if diffs else math.nan
                row["paired_diff_sem"] = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else math.nan
                row["parity"] = abs(mean - b_mean) <= max(sem, b_sem)
            out.setdefault(arm, {})[column] = row
    return out


def markdown(report: dict) -> str:
    p = report["params"]
    cols = ["/".join(c) for c in COLUMNS]
    lines = [
        "# Quality parity of the speed levers",
        "",
        f"The quality suite's `neds single` arm ({report['sessions']} generated sessions, {p['trials']} trials, "
        f"{p['units']} units; NEDS {p['layers']} layers, hidden {p['hidden']}, lr {p['lr']}, {p['epochs']} epochs; seeds "
        f"{report['seeds']}), once per arm, on the same sessions, splits and seeds. {report['machine']['cpu']}, torch "
        f"{report['machine']['torch']}. Mean ± s.e.m. over sessions × seeds; below it, the paired difference from fp32 on "
        "the same (session, seed) ± its s.e.m.; **=** marks parity (|mean − fp32's mean| ≤ the larger s.e.m.), "
        "**≠** a difference.",
        "",
        "| arm | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for arm, columns in report["compare"].items():
        cells = []
        for c in cols:
            r = columns.get(c)
            if r is None:
                cells.append("-")
                continue
            cell = f"{r['mean']:.3f} ± {r['sem']:.3f}"
            if "paired_diff" in r:
                cell += f"<br>{r['paired_diff']:+.3f} ± {r['paired_diff_sem']:.3f} {'=' if r['parity'] else '≠'}"
            cells.append(cell)
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    verdicts = {arm: all(r.get("parity", True) for r in columns.values())
                for arm, columns in report["compare"].items() if arm != BASE}
    lines += [""] + [f"- {arm}: {'at parity with fp32 on every metric' if ok else 'differs from fp32 on ' + ', '.join(c for c, r in report['compare'][arm].items() if not r.get('parity', True))}"
                     for arm, ok in verdicts.items()] + [""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    seeds = args.seeds or ([0] if args.quick else [0, 1])
    if BASE not in args.arms:
        args.arms = [BASE, *args.arms]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        got = run(workdir, args.quick, seeds, args.arms)
    report = {"benchmark": "precision_parity", "quick": args.quick, "machine": machine(), **got,
              "compare": compare(got["scores"])}
    text = markdown(report)
    print(text)
    print(f"wrote {write_results('precision_parity', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
