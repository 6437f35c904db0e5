"""The evaluation's summary table: mean ± s.e.m. over sessions, in task order, as text."""

from __future__ import annotations

import sys

import numpy as np

def summarise(rows: list[tuple[str, str, str, str, float]]) -> list[tuple[str, str, str, float, float, int]]:
    """(task, modality, metric, mean, s.e.m., n sessions) over sessions; NaN values left out."""
    groups: dict[tuple[str, str, str], list[float]] = {}
    for _, task, modality, metric, value in rows:
        groups.setdefault((task, modality, metric), []).append(value)
    out = []
    for (task, modality, metric), values in groups.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        mean = float(v.mean()) if v.size else float("nan")
        sem = float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")
        out.append((task, modality, metric, mean, sem, int(v.size)))
    return sorted(out, key=lambda r: (*_task_order(r[0]), r[0], r[1], r[2]))


#: Oracles scored on every spike (the ceilings of encoding), in the order they follow `encoding`.
WHOLE_ORACLES = ("oracle", "oracle_behaviour")


def _task_order(task: str) -> tuple[int, int]:
    """Each prediction task followed by its oracle; encoding tasks before decoding ones.

    `encoding` is followed by `oracle` then `oracle_behaviour`; a spike task `<t>` by `oracle_<t>`.
    """
    order = {"encoding": 0, "co_smoothing": 1, "forward": 2, "inter_region": 3, "intra_region": 4, "decoding": 5}
    if task in WHOLE_ORACLES:
        return order["encoding"], 1 + WHOLE_ORACLES.index(task)
    return order.get(task.removeprefix("oracle_"), 6), int(task.startswith("oracle_"))


def format_summary(summary: list[tuple[str, str, str, float, float, int]], title: str = "") -> str:
    """The summary as an aligned text table (what the eval stage and `neds-run inspect` print)."""
    header = ("task", "modality", "metric", "mean", "± s.e.m.", "sessions")
    lines = [
        (task, modality, metric, _number(mean), "" if np.isnan(sem) else _number(sem), str(n))
        for task, modality, metric, mean, sem, n in summary
    ]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]
    right = {3, 4, 5}

    def fmt(row):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [fmt(header), rule, *(fmt(r) for r in lines)]
    if title:
        body.insert(0, title)
    return "\n".join(body)


def _number(value: float) -> str:
    return "nan" if np.isnan(value) else f"{value:.4f}"


def print_skipped(results: list, file=sys.stderr) -> None:
    """One note per distinct reason a metric was not scored (`SessionResult.skipped`)."""
    reasons = sorted({why for r in results for why in r.skipped})
    for why in reasons:
        print(f"note: not scored: {why}", file=file)
