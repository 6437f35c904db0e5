"""The benchmark suite: `python -m benchmarks [--quick] [--skip-quality | --skip-speed] [--out DIR]`.

1. Quality on generated sessions with ground truth (`quality.py`): NEDS (both static-token
   layouts, and pretrained on a pool of other sessions then finetuned), the baselines and the
   oracle, mean ± s.e.m. over sessions and seeds, the region probe; checked for sanity (numbers
   present, no model above the oracle on bits per spike).
2. Speed, each with its peak RSS: binning, preparation per session, the training step, throughput
   and evaluation vs model size, the quickstart end to end, memory vs sessions; and held-out
   scores vs the number of pretraining sessions (one script each, run in this mode).
3. Plots (`plots.py`): the quality table, bits per spike vs the oracle per neuron, scores vs the
   number of pretraining sessions, throughput vs model size, RSS vs sessions.

Writes `<out>/quality.{md,csv,json}`, `speed.md`, `summary.md` and the PNGs (default out:
benchmarks/results/suite, or suite_quick with --quick). `--skip-quality` reuses `<out>/quality.json`
from an earlier run and `--skip-speed` the speed benchmarks' last results, so the long quality part
and the speed part (which wants a quiet machine) can run at different times; both flags together
redraw the tables and plots. Exits 1 when a sanity check fails.

`--reference PATH` (a checkout of github yzhang511/NEDS) is checked first, imports and packages
included, so a missing package stops the suite at once. `--workdir DIR` keeps the quality runs
there; running again with the same folder reuses every run that finished with the same recipe
and code, so an interrupted suite goes on where it stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

from . import plots, quality
from ._results import RESULTS, machine
from .plots import load_json

from neds_framework.atomic import atomic_write_text
from neds_framework.errors import NedsError

# Speed and scaling benchmarks, in the order the suite runs them (each writes results/<name>[_quick].*).
SPEED = ("bench_binning", "bench_prepare", "bench_train_step", "bench_model_size", "bench_quickstart", "bench_scale",
         "bench_pretrain")


def quality_markdown(params: dict, values: dict, header: list[str], rows: list[list[str]], problems: list[str],
                     checks: list | None = None) -> str:
    probe = values.get("region probe", {}).get("runs", [])
    reference = values.get("reference checkout", {}).get("path")
    commits = sorted({c.get("commit") for c in values.get("curves", {}).get("reference", []) if c.get("commit")})
    pairs = values.get("pairs", {}).get("neds multi vs neds single", {})
    lines = [
        "# Quality on generated sessions",
        "",
        f"{params['sessions']} generated sessions ({params['trials']} trials, {params['units']} units before the 5 Hz "
        f"filter), seeds {params['seeds']}. NEDS: {params['layers']} layer(s), hidden {params['hidden']}, "
        f"lr {params.get('lr', '-')}, {params['epochs']} epochs per session (neds single); neds multi is pretrained for "
        f"{params.get('pretrain_epochs', params['epochs'])} epochs on {params.get('pool', 'the other')} other generated "
        f"sessions (another lab; pretraining seed(s) {params.get('pretrain_seeds', params['seeds'])}), then finetuned for "
        f"{params.get('finetune_epochs', params['epochs'])} epochs on each session with each seed. Mean ± s.e.m. "
        "over sessions × seeds; test split; encoding = all spikes hidden, decoding = all behaviour hidden.",
        "",
        ("The reference: its own model, masking and training step (benchmarks/reference.py) from the checkout "
         f"`{reference}`" + (f" (commit {', '.join(commits)})" if commits else "") + f", on the first "
         f"{params.get('reference_sessions')} sessions × seeds {params.get('reference_seeds')}, the same steps as neds single; "
         "the row `neds single, reference's pairs` is neds single on exactly those (session, seed) pairs, which the "
         "target compares with the reference."
         if reference else "The reference: not run (no checkout given: `python -m benchmarks --reference PATH`)."),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Sanity: " + ("ok" if not problems else "; ".join(problems)),
        "",
    ]
    if pairs:
        lines += ["Matched pairs, neds multi against neds single on the same (session, seed) (ties count for multi):", "",
                  "| metric | multi wins | pairs |", "|---|---:|---:|",
                  *(f"| {c} | {v['wins']} | {v['pairs']} |" for c, v in pairs.items()), ""]
    if checks:
        lines += ["Targets (issue #13):", "", "| target | met | numbers |", "|---|---|---|",
                  *(f"| {what} | {'-' if ok is None else ('yes' if ok else 'no')} | {detail} |" for what, ok, detail in checks), ""]
    lines += [
        "Region probe (each neuron's brain region predicted from its learned spikes-readout weights in the "
        "pretrained multi-session model, by a random forest and, beside it, a logistic regression; stratified "
        "cross-validation over the neurons of the pool's sessions):",
        "",
        "| seed | neurons | regions | accuracy (random forest) | accuracy (logistic) | chance |",
        "|---:|---:|---:|---:|---:|---:|",
        *(f"| {seed} | {r['neurons']} | {r['regions']} | {r['accuracy']:.3f} | {r.get('accuracy_linear', float('nan')):.3f} "
          f"| {r['chance']:.3f} |" for seed, r in zip(params.get("pretrain_seeds", params["seeds"]), probe)),
        "",
    ]
    return "\n".join(lines)


def write_quality(out: Path, params: dict, values: dict) -> tuple[str, list[str]]:
    header, rows, numbers = quality.table(values)
    problems = quality.sanity(numbers)
    md = quality_markdown(params, values, header, rows, problems, quality.targets(numbers, values))
    atomic_write_text(out / "quality.md", md)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "metric", "mean", "sem", "n"])
    for (arm, column), (mean, sem, n) in numbers.items():
        writer.writerow([arm, column, mean, sem, n])
    atomic_write_text(out / "quality.csv", buffer.getvalue())
    plots.quality(header, numbers, out / "quality.png")
    if values.get("curves", {}).get("neds single"):
        plots.learning_curves(values["curves"], out / "learning_curves.png")
    return md, problems


def run_speed(quick: bool, reference: Path | None = None) -> None:
    for script in SPEED:
        args = [sys.executable, "-m", f"benchmarks.{script}"] + (["--quick"] if quick else [])
        if script == "bench_train_step" and reference is not None:  # its rows beside the reference's code
            args += ["--reference", str(reference)]
        print(f"running {script} ...", flush=True)
        done = subprocess.run(args, capture_output=True, text=True, cwd=HERE.parent)
        if done.returncode != 0:
            raise SystemExit(f"{script} failed:\n{done.stderr[-2000:]}")


def speed_overview(quick: bool) -> str:
    """One table over the speed benchmarks' JSON results, then each benchmark's own Markdown ('' without results)."""
    suffix = "_quick" if quick else ""
    names = ("binning", "prepare", "train_step", "model_size", "quickstart", "scale", "pretrain")
    got = {name: load_json(RESULTS / f"{name}{suffix}.json") for name in names}
    rows = []
    if got["binning"]:
        m = got["binning"]["methods"]
        ours, loop = m["bin_spikes (vectorised)"], m["NEDS loop (mask + bincount2D)"]
        rows.append(("spike binning", f"{ours['spikes_per_s'] / 1e6:.0f} M spikes/s ({loop['speedup']:.0f}x the "
                     f"reference's per-trial loop, {loop['spikes_per_s'] / 1e6:.1f} M spikes/s)", got["binning"]["peak_rss_mb"]))
    if got["prepare"]:
        p = got["prepare"]
        rows.append(("preparation", f"{p['seconds_per_session']:.2f} s per session ({p['rows'][-1]['sessions']} sessions in "
                     f"{p['rows'][-1]['wall_s']:.1f} s)", max(r["peak_rss_mb"] for r in p["rows"])))
    if got["train_step"]:
        t = got["train_step"]
        for kind, label in (("train", "training step"), ("eval", "evaluation, encoding + decoding")):
            rows_ = {r["row"]: r for r in t.get(kind, [])}
            ours = rows_.get("ours: defaults") or rows_.get("ours eval: defaults")
            ref = rows_.get("reference") or rows_.get("reference eval")
            if ours is None:
                continue
            versus = (f"{ours['trials_per_s'] / ref['trials_per_s']:.1f}x the reference's code here, "
                      f"{ref['trials_per_s']:.1f} trials/s" if ref else "no reference run")
            rows.append((f"{label}, single size, defaults ({ours['amp']})", f"{ours['trials_per_s']:.1f} trials/s, "
                         f"{ours['utilisation_fp32']:.0%} of the fp32 / {ours['utilisation_bf16']:.0%} of the bf16 "
                         f"ceiling ({versus})", ours["peak_rss_mb"]))
    if got["model_size"]:
        for r in got["model_size"]["rows"]:
            rows.append((f"{r['size']}: train / eval forward", f"{r['train_trials_per_s']:.1f} / {r['eval_trials_per_s']:.1f} "
                         f"trials/s ({r['parameters_m']:.2f} M parameters)", r["peak_rss_mb"]))
    if got["quickstart"]:
        q = got["quickstart"]
        for stage, r in q["stages"].items():
            rows.append((f"quickstart {stage}", f"{r['wall_s']:.1f} s", r["peak_rss_mb"]))
        rows.append(("quickstart end to end", f"{q['total_s']:.0f} s ({q['epochs']} epochs)",
                     max(r["peak_rss_mb"] for r in q["stages"].values())))
    if got["scale"]:
        for r in got["scale"]["rows"]:
            cache = "streaming" if r["cache_mb"] == 0 else f"{r['cache_mb']} MiB cache"
            rows.append((f"training on {r['sessions']} sessions, {cache}", f"{r['trials_per_s']:.0f} trials/s (tiny model), "
                         f"data wait {r['data_wait_share']:.1%}", r["peak_rss_mb"]))
    if not rows:
        return ""
    lines = ["# Speed and scaling", "", "| what | speed | peak RSS (MiB) |", "|---|---|---:|",
             *(f"| {what} | {speed} | {'-' if rss is None else f'{rss:.0f}'} |" for what, speed, rss in rows), ""]
    for name in got:
        md = RESULTS / f"{name}{suffix}.md"
        if md.exists():
            lines += [md.read_text().replace("\n# ", "\n## ").replace("# ", "## ", 1), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sessions, few epochs, one seed (CI)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-speed", action="store_true", help="no speed runs; the summary reuses their last results")
    parser.add_argument("--skip-quality", action="store_true", help="no quality runs; the summary reuses <out>/quality.json")
    parser.add_argument("--reference", type=Path, default=None,
                        help="a checkout of the reference NEDS (github yzhang511/NEDS): adds its row and learning curves")
    parser.add_argument("--reference-commit", default=None,
                        help="the reference checkout's commit, recorded in the results when the checkout is not a git work tree")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the quality runs in this folder (default: a temporary one, deleted); run again "
                             "with the same folder to go on after an interruption: finished runs of the same "
                             "recipe and code are reused")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("suite_quick" if args.quick else "suite")
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if args.skip_quality:
        saved = load_json(out / "quality.json")
        if saved is None:
            raise SystemExit(f"--skip-quality: no {out / 'quality.json'} from an earlier run; run without it first")
        params, values, quality_machine = saved["params"], saved["values"], saved.get("machine", {})
    else:
        params, quality_machine = (quality.QUICK if args.quick else quality.FULL), machine()
        if args.reference is None:
            print("reference: no checkout given (--reference PATH); running this project's rows only", file=sys.stderr)
        else:  # before hours of our runs: its checkout and the packages its code imports
            from .reference import preflight

            try:
                preflight(args.reference)
            except NedsError as exc:
                raise SystemExit(f"error: {exc}") from None
        with contextlib.ExitStack() as stack:
            if args.workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="neds-suite-")))
            else:
                workdir = args.workdir.resolve()
                workdir.mkdir(parents=True, exist_ok=True)
                print(f"quality runs: {workdir} (kept; finished runs there are reused)", file=sys.stderr)
            values = quality.run_quality(workdir, args.quick, args.reference, args.reference_commit)
    md, problems = write_quality(out, params, values)
    if not args.skip_quality:
        atomic_write_text(out / "quality.json", json.dumps(
            {"machine": quality_machine, "params": params, "values": values, "problems": problems,
             "seconds": time.perf_counter() - start}, indent=2) + "\n")
    if not args.skip_speed:
        run_speed(args.quick, args.reference)
    speed = speed_overview(args.quick)
    if speed:
        atomic_write_text(out / "speed.md", speed)
    drawn = plots.draw_all(RESULTS, out, values.get("per neuron"), "_quick" if args.quick else "")
    speed_md = out / "speed.md"
    m = machine()
    summary = "\n".join([
        md,
        speed_md.read_text() if speed_md.exists() else "",
        "Plots: " + ", ".join(p.name for p in [out / "quality.png", *drawn]
                              + ([out / "learning_curves.png"] if (out / "learning_curves.png").exists() else [])),
        "",
        "Machine (this run): " + ", ".join(f"{k} {v}" for k, v in m.items() if v != "") + ".",
        "" if not args.skip_quality else "Quality part (an earlier run, from quality.json): "
        + ", ".join(f"{k} {v}" for k, v in quality_machine.items() if v != "") + ".",
        "",
    ])
    atomic_write_text(out / "summary.md", summary)
    print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
