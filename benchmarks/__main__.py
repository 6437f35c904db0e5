"""The benchmark suite: `python -m benchmarks [--quick] [--out DIR]`.

1. Quality on generated sessions with ground truth (`quality.py`): NEDS (both static-token
   layouts, and pretrained on the other sessions then finetuned), the baselines and the oracle,
   mean ± s.e.m. over sessions and seeds; checked for sanity (numbers present, no model above
   the oracle on bits per spike).
2. Speed: the binning and training-step benchmarks, run in the same mode.

Writes `<out>/quality.md`, `quality.csv`, `quality.json`, `quality.png`, `speed.md` and
`summary.md` (default out: benchmarks/results/suite, or suite_quick with --quick). Exits 1 when a
sanity check fails.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import RESULTS, machine  # noqa: E402

from neds_framework.atomic import atomic_path, atomic_write_text  # noqa: E402


def quality_plot(header: list[str], numbers: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = list(dict.fromkeys(arm for arm, _ in numbers))
    columns = header[1:]
    fig = Figure(figsize=(2.2 * len(columns), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        present = [a for a in arms if numbers.get((a, column), (0, 0, 0))[2]]
        means = [numbers[(a, column)][0] for a in present]
        sems = [numbers[(a, column)][1] if numbers[(a, column)][2] > 1 else 0.0 for a in present]
        ax.bar(range(len(present)), means, yerr=sems, color=["tab:gray" if a == "oracle" else "tab:blue" for a in present])
        ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=7)
        ax.set_title(column.replace("decoding/", "").replace("encoding/", ""), fontsize=8)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def run_speed(quick: bool) -> str:
    """Run the speed benchmarks in this mode and gather their Markdown."""
    parts = []
    for script, name in (("bench_binning.py", "binning"), ("bench_train_step.py", "train_step")):
        args = [sys.executable, str(HERE / script)] + (["--quick"] if quick else [])
        done = subprocess.run(args, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{script} failed:\n{done.stderr[-2000:]}")
        md = RESULTS / (f"{name}_quick.md" if quick else f"{name}.md")
        parts.append(md.read_text() if md.exists() else done.stdout)
    return "\n".join(parts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sessions, few epochs, one seed (CI)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--skip-speed", action="store_true", help="quality only")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("suite_quick" if args.quick else "suite")
    out.mkdir(parents=True, exist_ok=True)
    import quality

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neds-suite-") as tmp:
        values = quality.run_quality(Path(tmp), args.quick)
    header, rows, numbers = quality.table(values)
    problems = quality.sanity(numbers)
    params = quality.QUICK if args.quick else quality.FULL
    md = [
        "# Quality on generated sessions",
        "",
        f"{params['sessions']} generated sessions ({params['trials']} trials, {params['units']} units before the 5 Hz "
        f"filter), seeds {params['seeds']}; NEDS {params['layers']} layer(s), hidden {params['hidden']}, "
        f"{params['epochs']} epochs. Mean ± s.e.m. over sessions × seeds; test split; encoding = all spikes hidden, "
        "decoding = all behaviour hidden.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        "Sanity: " + ("ok" if not problems else "; ".join(problems)),
        "",
        "Region probe (each neuron's brain region predicted from its learned spikes-readout weights of the "
        "pretrained multi-session model, stratified cross-validation over the neurons of its sessions):",
        "",
        "| seed | neurons | regions | accuracy | chance |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {seed} | {r['neurons']} | {r['regions']} | {r['accuracy']:.3f} | {r['chance']:.3f} |"
          for seed, r in zip(params["seeds"], values.get("region probe", {}).get("runs", []))),
        "",
    ]
    atomic_write_text(out / "quality.md", "\n".join(md))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["model", "metric", "mean", "sem", "n"])
    for (arm, column), (mean, sem, n) in numbers.items():
        writer.writerow([arm, column, mean, sem, n])
    atomic_write_text(out / "quality.csv", buffer.getvalue())
    atomic_write_text(out / "quality.json", json.dumps(
        {"machine": machine(), "params": params, "values": values, "problems": problems}, indent=2) + "\n")
    quality_plot(header, numbers, out / "quality.png")
    speed = "" if args.skip_speed else run_speed(args.quick)
    if speed:
        atomic_write_text(out / "speed.md", speed)
    m = machine()
    summary = "\n".join(md) + (f"\n{speed}" if speed else "") + (
        f"\nRan in {time.perf_counter() - start:.0f} s on {m['cpu']}, {m['cpus']} CPUs, torch {m['torch']}, "
        f"Python {m['python']}.\n")
    atomic_write_text(out / "summary.md", summary)
    print(summary)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
