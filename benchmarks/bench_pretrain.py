"""Does multi-session pretraining help new animals? Pretrain on N generated sessions, finetune on held-out ones.

For N = 1 (single-session pretraining), 8 and 32: pretrain a small NEDS model (2 layers, hidden
64) on the first N generated sessions for the same number of optimiser steps, then finetune it on
2 held-out generated sessions (another lab: new eids, the same region tuning families) and
evaluate them. A model trained on the held-out sessions from scratch, for the finetuning budget,
is the reference row. Held-out scores: bits per spike (and the oracle's), choice and block
accuracy, wheel and whisker R², mean ± s.e.m. over the held-out sessions.

    python -m benchmarks.bench_pretrain                 # N = 1, 8, 32; 600 pretraining steps
    python -m benchmarks.bench_pretrain --quick         # N = 1, 2; a few steps, for CI

Writes benchmarks/results/pretrain.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from ._results import machine, write_results

ROOT = Path(__file__).resolve().parents[1]
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
SCORES = [("encoding", "spikes", "bps"), ("oracle", "spikes", "bps"), ("decoding", "choice", "accuracy"),
          ("decoding", "block", "accuracy"), ("decoding", "wheel", "r2"), ("decoding", "whisker", "r2")]


def recipe(workdir: Path, name: str, body: str) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"extends: {ROOT / 'recipes' / 'quickstart.yaml'}\n" + textwrap.dedent(body))
    return path


def neds_run(workdir: Path, path: Path, *sets: str) -> float:
    cmd = [NEDS_RUN, str(path), "--set", "train.progress=false"]
    for item in sets:
        cmd += ["--set", item]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def held_out_scores(run_dir: Path) -> dict:
    from neds_framework.engine.record import read_table
    from neds_framework.engine.eval_tables import summarise
    from neds_framework.engine.record import RunRecord

    summary = summarise(read_table(RunRecord.load(run_dir)))
    return {f"{t}/{m}/{k}": (mean, sem) for t, m, k, mean, sem, _ in summary if (t, m, k) in SCORES}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, default=600, help="pretraining optimiser steps for every N")
    parser.add_argument("--finetune-epochs", type=int, default=10)
    args = parser.parse_args(argv)
    sizes = (1, 2) if args.quick else (1, 8, 32)
    steps = 10 if args.quick else args.steps
    ft_epochs = 1 if args.quick else args.finetune_epochs
    rows = []
    with tempfile.TemporaryDirectory(prefix="neds-bench-pretrain-") as tmp:
        workdir = Path(tmp)
        pool = f"{{sessions: {max(sizes)}, seed: 0}}"
        for n in sizes:
            pre = recipe(workdir, f"pre{n}", f"""
                stages: [prepare, train]
                run: {{name: pre{n}}}
                data: {{source: {{one: {{cache_dir: pool}}, synthesize: {pool}, max_sessions: {n}}}}}
                train: {{epochs: 100000, max_steps: {steps}}}
                """)
            seconds = neds_run(workdir, pre)
            ft = recipe(workdir, f"ft{n}", f"""
                stages: [prepare, finetune, eval]
                run: {{name: ft{n}}}
                data: {{source: {{one: {{cache_dir: heldout}}, synthesize: {{sessions: 2, seed: 1, lab: heldoutlab}}}}}}
                finetune: {{pretrained: runs/pre{n}, epochs: {ft_epochs}, threads: 2, optimizer: {{lr: 3.0e-3}}}}
                eval: {{figures: false}}
                """)
            ft_seconds = neds_run(workdir, ft)
            rows.append({"pretrain_sessions": n, "pretrain_steps": steps, "pretrain_s": seconds, "finetune_s": ft_seconds,
                         "scores": held_out_scores(workdir / "runs" / f"ft{n}")})
            print(rows[-1], flush=True)
        scratch = recipe(workdir, "scratch", f"""
            stages: [prepare, train, eval]
            run: {{name: scratch}}
            data: {{source: {{one: {{cache_dir: heldout}}, synthesize: {{sessions: 2, seed: 1, lab: heldoutlab}}}}}}
            train: {{epochs: {ft_epochs}}}
            eval: {{figures: false}}
            """)
        seconds = neds_run(workdir, scratch)
        rows.append({"pretrain_sessions": 0, "pretrain_steps": 0, "pretrain_s": 0.0, "finetune_s": seconds,
                     "scores": held_out_scores(workdir / "runs" / "scratch")})
    report = {"benchmark": "pretrain", "quick": args.quick, "machine": machine(), "steps": steps,
              "finetune_epochs": ft_epochs, "rows": rows}
    header = "| pretraining sessions | " + " | ".join("/".join(k) for k in SCORES) + " | pretrain (s) | finetune (s) |"
    lines = [
        "# Multi-session pretraining, then finetuning on held-out sessions",
        "",
        f"Small NEDS (2 layers, hidden 64). Pretraining: the first N of {max(sizes)} generated sessions, {steps} "
        f"optimiser steps for every N (batch 16, lr 3e-3, one-cycle). Finetuning: all weights, {ft_epochs} epochs on 2 "
        "held-out generated sessions (another lab, new eids), then their test trials are scored; mean ± s.e.m. over "
        f"the 2 sessions. Row 0: trained from scratch on the held-out sessions for the same {ft_epochs} epochs. "
        f"{report['machine']['cpu']}, {report['machine']['cpus']} CPUs, torch {report['machine']['torch']}.",
        "",
        header,
        "|" + "---:|" * (len(SCORES) + 3),
    ]
    for r in sorted(rows, key=lambda r: r["pretrain_sessions"]):
        cells = []
        for key in SCORES:
            mean, sem = r["scores"].get("/".join(key), (float("nan"), float("nan")))
            cells.append(f"{mean:.3f} ± {sem:.3f}")
        label = "0 (scratch)" if r["pretrain_sessions"] == 0 else str(r["pretrain_sessions"])
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {r['pretrain_s']:.0f} | {r['finetune_s']:.0f} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    print(f"wrote {write_results('pretrain', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
