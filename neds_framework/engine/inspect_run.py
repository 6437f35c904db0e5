"""`neds-run inspect RUN`: what a run folder holds, in a few lines and a metrics table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from neds_framework.engine.record import read_table
from neds_framework.engine.eval_tables import format_summary, summarise
from neds_framework.engine.record import RunRecord
from neds_framework.errors import NedsError
from neds_framework.recipe_merge import load_yaml


def _last_finite(column) -> float:
    values = [v for v in column if not math.isnan(v)]
    return values[-1] if values else float("nan")


def describe_run(run_dir: str | Path, split: str = "test", per_session: bool = False) -> str:
    record = RunRecord.load(run_dir)
    meta = record.meta
    lines = [f"run {run_dir}"]
    versions = ", ".join(
        f"{name} {record.meta_value(key)}" for name, key in (("neds-framework", "framework_version"), ("torch", "torch_version"))
        if key in meta
    )
    lines.append(f"  versions: {versions or 'unknown'}; seed {record.meta_value('seed', '?')}")
    recipe = load_yaml(meta["recipe"]) if "recipe" in meta else {}
    if recipe:
        model = recipe.get("model") or {}
        size = ", ".join(f"{k} {model[k]}" for k in ("layers", "hidden", "heads", "ffn", "mode") if k in model)
        lines.append(f"  recipe: stages {', '.join(recipe.get('stages', []))}; model {model.get('name', '?')} ({size})")
    if "pretrained" in meta:
        lines.append(f"  finetuned from {meta['pretrained']}")
    sessions = record.meta_value("model_sessions") or {}
    if sessions:
        lines.append(f"  model sessions: {len(sessions)}")
    epochs = record.history["epoch"]
    if epochs.get("epoch"):
        n = len(epochs["epoch"])
        steps = record.history["step"].get("step", [])
        part = [f"{n} epoch(s), {int(steps[-1]) if steps else 0} step(s)"]
        if "train_loss" in epochs:
            part.append(f"last train_loss {_last_finite(epochs['train_loss']):.4f}")
        if "val_loss" in epochs:
            val = np.asarray(epochs["val_loss"], dtype=float)
            if np.isfinite(val).any():
                best = int(np.nanargmin(val))
                part.append(f"lowest val_loss {val[best]:.4f} (epoch {best + 1})")
        if "trials_per_s" in epochs:
            part.append(f"{np.nanmean(epochs['trials_per_s']):.1f} trials/s")
        if "data_wait_share" in epochs:
            part.append(f"data wait {np.nanmean(epochs['data_wait_share']):.1%}")
        lines.append("  training: " + "; ".join(part))
    if record.checkpoints:
        lines.append(f"  checkpoints: {', '.join(sorted(record.checkpoints))}")
    rows = read_table(record, split)
    if not rows:
        evaluated = sorted({path.split("/")[1] for path in record.results if path.startswith("eval/") and path.endswith("/table")})
        if evaluated or split != "test":
            raise NedsError(
                f"--split {split}: {record.path} holds no evaluation on that split "
                f"(evaluated: {', '.join(evaluated) or 'none'}); choose one of those, or add the eval stage to the recipe"
            )
        lines.append(f"  no evaluation on the {split} split (add the eval stage to the recipe)")
        return "\n".join(lines)
    n_sessions = len({r[0] for r in rows})
    lines.append("")
    lines.append(format_summary(summarise(rows), title=f"evaluation on the {split} split, {n_sessions} session(s)"))
    if per_session:
        lines.append("")
        lines.append(_per_session_table(rows))
    return "\n".join(lines)


def _per_session_table(rows) -> str:
    sessions = sorted({r[0] for r in rows})
    keys = sorted({(r[1], r[2], r[3]) for r in rows})
    values = {(r[0], r[1], r[2], r[3]): r[4] for r in rows}
    header = ["task/modality/metric", *(s[:8] for s in sessions)]
    body = [["/".join(k), *(f"{values.get((s, *k), float('nan')):.4f}" for s in sessions)] for k in keys]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in body)])
