"""Evaluation: predictions on held-out trials, scored per session by the registered metrics.

For each session the split's trials are run through a predictor under the evaluation masks
(`neds_framework.model.eval_masks`):

    encoding     all neural activity hidden, behaviour shown: spike rates (and LFP) are scored
    decoding     all behaviour hidden, activity shown: wheel, whisker, choice, block are scored
    variables    one task per behaviour variable, ``decode_<name>``: only that variable hidden
    oracle       (sessions with ground truth) the simulator's true rates scored as a prediction:
                 the ceiling of encoding

A modality is scored in a task only where the task hides all of it. Each metric scores the
modalities of its ``kind`` ("spikes": rates vs counts, "dynamic": per-bin values, "static":
class labels). Scalars go into one long table (session, task, modality, metric, value);
per-neuron arrays, predictions and targets are kept per session for the run record and figures.

A predictor is any callable ``(batch, masks) -> {modality: tensor}`` returning what metrics
consume (`Head.predict`): the trained model is one, the oracle and baselines are others.
"""

from __future__ import annotations

import sys
from typing import Callable, Iterable

import attrs
import numpy as np
import torch

from neds_framework.data.batches import StoreBatches, batch_loader, plan_epoch
from neds_framework.data.store import SessionStore
from neds_framework.engine.settings import TASKS
from neds_framework.errors import NedsError
from neds_framework.model.batch import ELEMENT_MASKED, NEURAL_MODALITIES, Batch, Masks
from neds_framework.model.eval_masks import decoding_masks, encoding_masks, variable_decoding_masks

Predictor = Callable[[Batch, Masks], dict]


@attrs.frozen
class Scored:
    """One (task, modality) of one session: what was predicted, what was true, and the scores."""

    prediction: np.ndarray
    target: np.ndarray
    scalars: dict[str, float] = attrs.field(factory=dict)
    arrays: dict[str, np.ndarray] = attrs.field(factory=dict)  # per-neuron scores


@attrs.frozen
class SessionResult:
    eid: str
    trials: np.ndarray  # indices of the scored trials in the session
    tasks: dict[str, dict[str, Scored]]  # task -> modality -> Scored
    conditions: np.ndarray | None
    skipped: tuple[str, ...] = ()  # "metric on task/modality: why", for metrics that could not run

    def rows(self) -> list[tuple[str, str, str, str, float]]:
        return [
            (self.eid, task, modality, metric, value)
            for task, by_modality in self.tasks.items()
            for modality, scored in by_modality.items()
            for metric, value in scored.scalars.items()
        ]


# --------------------------------------------------------------------------- what to hide


def task_masks(task: str, batch: Batch, neural: tuple[str, ...] = NEURAL_MODALITIES) -> Masks:
    if task == "encoding":
        return encoding_masks(batch, neural)
    if task == "decoding":
        return decoding_masks(batch, neural)
    if task.startswith("decode_"):
        return variable_decoding_masks(batch, task[len("decode_"):], neural)
    raise NedsError(f"unknown evaluation task '{task}'; known: encoding, decoding, decode_<variable>")


def expand_tasks(tasks: Iterable[str], modalities: Iterable[str], neural: tuple[str, ...] = NEURAL_MODALITIES) -> list[str]:
    """The recipe's task names with `variables` expanded to one ``decode_<name>`` per behaviour."""
    out = []
    for task in tasks:
        if task == "variables":
            out.extend(f"decode_{name}" for name in modalities if name not in neural)
        elif task in ("encoding", "decoding"):
            out.append(task)
        else:
            raise NedsError(f"eval.tasks: unknown task '{task}'; choose from {', '.join(TASKS)}")
    return out


def metric_kind(modality: str, target: np.ndarray) -> str:
    """Which metric family scores a modality: element-masked counts, per-trial labels, or values."""
    if modality in ELEMENT_MASKED:
        return "spikes"
    return "static" if target.ndim == 1 else "dynamic"


# --------------------------------------------------------------------------- predicting


def model_predictor(model: torch.nn.Module, autocast=None) -> Predictor:
    """The trained model as a predictor: forward under the masks, then `Head.predict`."""

    def predict(batch: Batch, masks: Masks) -> dict:
        with torch.no_grad(), (autocast() if autocast else _nullcontext()):
            return model.predict(model(batch, masks))

    return predict


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def collect_predictions(
    predict: Predictor,
    store: SessionStore,
    eid: str,
    modalities: list[str],
    split: str,
    tasks: list[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    neural: tuple[str, ...] = NEURAL_MODALITIES,
) -> tuple[np.ndarray, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """(trial indices, task -> modality -> (prediction, target)) over a session's split.

    A modality enters a task's results only when the task's mask hides all of it and the
    predictor returned it.
    """
    keys = plan_epoch(store, split, batch_size, seed=0, epoch=0, shuffle=False, sessions=[eid])
    parts: dict[str, dict[str, tuple[list, list]]] = {task: {} for task in tasks}
    trials = np.asarray([t for key in keys for t in key.trials], dtype=np.int64)
    for _, values in batch_loader(StoreBatches(store, modalities), keys):
        batch = Batch(session=eid, values={k: v.to(device) for k, v in values.items()})
        for task in tasks:
            try:
                masks = task_masks(task, batch, neural)
            except NedsError:
                continue  # a variable this session lacks
            hidden = [name for name, mask in masks.items() if bool(mask.all())]
            if not hidden:
                continue
            predictions = predict(batch, masks)
            for name in hidden:
                if name in predictions:
                    preds, targets = parts[task].setdefault(name, ([], []))
                    preds.append(predictions[name].float().cpu().numpy())
                    targets.append(batch.values[name].cpu().numpy())
    results = {
        task: {name: (np.concatenate(p), np.concatenate(t)) for name, (p, t) in by_modality.items()}
        for task, by_modality in parts.items()
        if by_modality
    }
    return trials, results


# --------------------------------------------------------------------------- scoring


def trial_conditions(store: SessionStore, eid: str, trials: np.ndarray, fields: tuple[str, ...]) -> np.ndarray | None:
    """(K, c) condition labels of the trials (for PSTHs), or None when a field is missing."""
    table = store.trials(eid)
    if not fields or any(f not in table for f in fields):
        return None
    return np.stack([np.asarray(table[f])[trials] for f in fields], axis=1)


def score(
    metrics: dict[str, object],
    modality: str,
    prediction: np.ndarray,
    target: np.ndarray,
    conditions: np.ndarray | None,
) -> tuple[Scored, list[str]]:
    """Every metric of the modality's kind on one (prediction, target); (scored, skipped reasons)."""
    kind = metric_kind(modality, target)
    scalars, arrays, skipped = {}, {}, []
    for name, metric in metrics.items():
        if getattr(metric, "kind", None) != kind:
            continue
        try:
            values = metric(prediction, target, conditions=conditions)
        except NedsError as exc:  # e.g. a PSTH metric on data without condition labels
            skipped.append(f"{name} on {modality}: {exc}")
            continue
        for key, value in values.items():
            if np.ndim(value) == 0:
                scalars[key] = float(value)
            else:
                arrays[key] = np.asarray(value)
    return Scored(prediction=prediction, target=target, scalars=scalars, arrays=arrays), skipped


def evaluate_session(
    predict: Predictor,
    store: SessionStore,
    eid: str,
    modalities: list[str],
    metrics: dict[str, object],
    split: str = "test",
    tasks: Iterable[str] = ("encoding", "decoding"),
    conditions: tuple[str, ...] = (),
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    neural: tuple[str, ...] = NEURAL_MODALITIES,
    oracle: bool = True,
) -> SessionResult:
    """Predict and score one session's split; adds the oracle task where ground truth exists."""
    tasks = expand_tasks(tasks, modalities, neural)
    trials, predicted = collect_predictions(predict, store, eid, modalities, split, tasks, batch_size, device, neural)
    labels = trial_conditions(store, eid, trials, conditions)
    scored: dict[str, dict[str, Scored]] = {}
    skipped: list[str] = []
    for task, by_modality in predicted.items():
        for name, (prediction, target) in by_modality.items():
            result, why = score(metrics, name, prediction, target, labels)
            scored.setdefault(task, {})[name] = result
            skipped.extend(f"{task}: {w}" for w in why)
    info = store.info(eid)
    if oracle and "rates" in info.truth and "spikes" in modalities and "spikes" in info.modalities and len(trials):
        truth = store.read_truth(eid, "rates", trials).astype(np.float32)
        counts = store.read(eid, "spikes", trials).astype(np.float32)
        result, why = score(metrics, "spikes", truth, counts, labels)
        scored["oracle"] = {"spikes": result}
        skipped.extend(f"oracle: {w}" for w in why)
    return SessionResult(eid=eid, trials=trials, tasks=scored, conditions=labels, skipped=tuple(skipped))


# --------------------------------------------------------------------------- tables


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
    order = {"encoding": 0, "oracle": 1, "decoding": 2}
    return sorted(out, key=lambda r: (order.get(r[0], 3), r[0], r[1], r[2]))


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


def print_skipped(results: list[SessionResult], file=sys.stderr) -> None:
    reasons = sorted({why for r in results for why in r.skipped})
    for why in reasons:
        print(f"note: not scored: {why}", file=file)
