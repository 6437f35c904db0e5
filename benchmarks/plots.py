"""The suite's plots, drawn from the benchmarks' JSON results (each one skipped when its results are missing).

    quality.png           every metric of the quality table, mean ± s.e.m. per model
    learning_curves.png   validation bits per spike and wheel R² against the step, NEDS and the reference
    bps_vs_oracle.png     per neuron: a model's bits per spike against the oracle's on the same trials
    pretrain_sessions.png held-out scores against the number of pretraining sessions (bench_pretrain)
    model_size.png        training and evaluation trials/s against parameters (bench_model_size)
    rss_sessions.png      peak RSS of training against the number of sessions (bench_scale)
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from matplotlib.ticker import NullFormatter, ScalarFormatter

from neds_framework.engine.figures import new_figure, save_png


def load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def quality(header: list[str], numbers: dict, path: Path) -> Path:
    arms = list(dict.fromkeys(arm for arm, _ in numbers))
    columns = header[1:]
    fig = new_figure(2.2 * len(columns), 3.4)
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        present = [a for a in arms if numbers.get((a, column), (0, 0, 0))[2]]
        means = [numbers[(a, column)][0] for a in present]
        sems = [numbers[(a, column)][1] if numbers[(a, column)][2] > 1 else 0.0 for a in present]
        ax.bar(range(len(present)), means, yerr=sems, color=["tab:gray" if a == "oracle" else "tab:blue" for a in present])
        ax.set_xticks(range(len(present)), present, rotation=60, ha="right", fontsize=7)
        ax.set_title(column.replace("decoding/", "").replace("encoding/", ""), fontsize=8)
    return save_png(fig, path)


def learning_curves(curves: dict, path: Path) -> Path:
    """curves: {arm: [{session, seed, points: [{step, bps, wheel_r2}]}]}; one line per (session, seed)."""
    fig = new_figure(9.0, 3.4)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for colour, (arm, runs) in zip(("tab:blue", "tab:orange", "tab:green"), curves.items()):
        for k, run in enumerate(runs):
            points = [pt for pt in run["points"] if "step" in pt]
            for ax, key in zip(axes, ("bps", "wheel_r2")):
                ax.plot([pt["step"] for pt in points], [pt.get(key, math.nan) for pt in points], color=colour, alpha=0.7,
                        lw=1, label=arm if k == 0 else None)
    for ax, label in zip(axes, ("validation bits/spike", "validation wheel R²")):
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_xlabel("optimiser step")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=7)
    return save_png(fig, path)


def bps_vs_oracle(per_neuron: dict, path: Path) -> Path | None:
    arms = [a for a, v in per_neuron.items() if v["model"]]
    if not arms:
        return None
    fig = new_figure(3.3 * len(arms), 3.4)
    axes = fig.subplots(1, len(arms), squeeze=False, sharex=True, sharey=True)[0]
    finite = [x for a in arms for x in per_neuron[a]["model"] + per_neuron[a]["oracle"] if math.isfinite(x)]
    floor = -1.0  # a few badly predicted neurons would squash the rest
    low, high = max(min(finite), floor), max(finite)
    for ax, arm in zip(axes, arms):
        model, oracle = per_neuron[arm]["model"], per_neuron[arm]["oracle"]
        ax.scatter(oracle, [max(m, low) for m in model], s=6, alpha=0.5)
        ax.plot([low, high], [low, high], color="tab:gray", lw=1, ls="--")
        ax.axhline(0.0, color="black", lw=0.5)
        ax.set_title(f"{arm} ({len(model)} neurons)", fontsize=9)
        ax.set_xlabel("oracle bits/spike (true rates)")
    axes[0].set_ylabel("model bits/spike" + (f" (clipped at {floor:g})" if min(finite) < floor else ""))
    return save_png(fig, path)


def pretrain_sessions(report: dict, path: Path) -> Path:
    rows = sorted(report["rows"], key=lambda r: r["pretrain_sessions"])
    scores = [("encoding/spikes/bps", "bits/spike"), ("decoding/wheel/r2", "wheel R²"),
              ("decoding/choice/accuracy", "choice accuracy"), ("decoding/block/accuracy", "block accuracy")]
    fig = new_figure(3.0 * len(scores), 3.0)
    axes = fig.subplots(1, len(scores), squeeze=False)[0]
    x = list(range(len(rows)))
    for ax, (key, label) in zip(axes, scores):
        means = [r["scores"].get(key, [math.nan, math.nan])[0] for r in rows]
        sems = [r["scores"].get(key, [math.nan, math.nan])[1] for r in rows]
        ax.errorbar(x, means, yerr=sems, marker="o", capsize=3)
        if key == "encoding/spikes/bps" and "oracle/spikes/bps" in rows[0]["scores"]:
            ax.axhline(rows[0]["scores"]["oracle/spikes/bps"][0], color="tab:gray", ls="--", lw=1, label="oracle")
            ax.legend(fontsize=7)
        ax.set_xticks(x, ["scratch" if r["pretrain_sessions"] == 0 else str(r["pretrain_sessions"]) for r in rows])
        ax.set_xlabel("pretraining sessions")
        ax.set_title(label, fontsize=9)
    return save_png(fig, path)


def model_size(report: dict, path: Path) -> Path:
    rows = report["rows"]
    fig = new_figure(4.6, 3.4)
    ax = fig.subplots()
    params = [r["parameters_m"] for r in rows]
    ax.plot(params, [r["train_trials_per_s"] for r in rows], marker="o", label="train step")
    ax.plot(params, [r["eval_trials_per_s"] for r in rows], marker="s", label="eval forward")
    for r in rows:
        ax.annotate(r["size"].replace(" (reference)", ""), (r["parameters_m"], r["train_trials_per_s"]), fontsize=7,
                    xytext=(3, -10), textcoords="offset points")
    single = next((r for r in rows if r["size"].startswith("single")), None)
    if single:  # neds-facts.md §11, measured on a machine with a 2.5-2.7x higher matmul ceiling
        ax.scatter([single["parameters_m"]], [3.15], marker="x", color="tab:red", zorder=3,
                   label="reference train step, single size (§11)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("trials/s")
    ax.set_title(f"{report['threads']} CPU threads, batch {report['batch']}", fontsize=9)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def rss_sessions(report: dict, path: Path) -> Path:
    fig = new_figure(4.6, 3.4)
    ax = fig.subplots()
    for cache, label in ((0, "streaming (cache_mb: 0)"), (2048, "2 GiB session cache")):
        rows = sorted((r for r in report["rows"] if r["cache_mb"] == cache), key=lambda r: r["sessions"])
        ax.plot([r["sessions"] for r in rows], [r["peak_rss_mb"] for r in rows], marker="o", label=label)
    ax.set_xlabel("sessions")
    ax.set_ylabel("peak RSS of training (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def draw_all(results: Path, out: Path, per_neuron: dict | None, suffix: str = "") -> list[Path]:
    """Every plot whose results exist (`<name><suffix>.json` under `results`); returns the files written."""
    written = []
    if per_neuron:
        written.append(bps_vs_oracle(per_neuron, out / "bps_vs_oracle.png"))
    for name, draw in (("pretrain", pretrain_sessions), ("model_size", model_size), ("scale", rss_sessions)):
        report = load_json(results / f"{name}{suffix}.json")
        if report:
            written.append(draw(report, out / f"{draw.__name__}.png"))
    return [p for p in written if p is not None]
