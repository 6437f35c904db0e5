"""Evaluation: predictions on held-out trials, scored per session by the registered metrics.

For each session the split's trials are run through a predictor under the evaluation masks
(`neds_framework.model.eval_masks`):

    encoding     all neural modalities hidden, behaviour shown: the neural ones are scored
    decoding     all behaviour hidden, neural activity shown: the behaviour is scored
    variables    one task per behaviour variable, ``decode_<name>``: only that variable hidden
    co_smoothing, forward, inter_region, intra_region
                 parts of each element-masked modality hidden (held-out neurons, the last
                 bins, one region from the others, part of a region from the rest)
    oracles      (sessions with ground truth) each modality's `ModalitySpec.oracles`: a truth
                 array scored as a prediction, e.g. the simulator's true rates (``oracle``, the
                 ceiling of encoding) and the behaviour-only rates (``oracle_behaviour``)

Roles, shapes and oracles come from each modality's spec, never from its name. A modality is
scored in a task only where the task hides all of it. Each metric scores the modalities whose
spec's ``metric_kind`` equals the metric's ``kind``. Scalars go into one long table (session, task, modality, metric, value);
per-neuron arrays, predictions and targets are kept per session for the run record and figures.

A predictor is any callable ``(batch, masks) -> {modality: tensor}`` returning what metrics
consume (`Head.predict`): the trained model is one, the oracle and baselines are others.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import attrs
import numpy as np
import torch

from neds_framework.data.batches import StoreBatches, batch_loader, plan_epoch, region_codes
from neds_framework.data.store import SessionStore
from neds_framework.engine.eval_tasks import SPIKE_TASKS, TaskOptions, expand_tasks, task_passes
from neds_framework.errors import NedsError
from neds_framework.modality import ModalitySpec
from neds_framework.model.batch import Batch, Masks, is_static
from neds_framework.model.build import component_settings
from neds_framework.stats import nanmean_or_nan

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


def recipe_metrics(recipe, registries) -> dict[str, object]:
    """The recipe's metrics (all registered ones when it names none), constructed."""
    if recipe.metrics:
        return {
            spec.name: registries.metrics.get(spec.name).factory(component_settings(spec, registries))
            for spec in recipe.metrics
        }
    out = {}
    for name in registries.metrics.names():
        entry = registries.metrics.get(name)
        out[name] = entry.factory(entry.settings() if entry.settings is not None else None)
    return out


# --------------------------------------------------------------------------- predicting


def model_predictor(model: torch.nn.Module, autocast=None) -> Predictor:
    """The trained model as a predictor: forward under the masks, then `Head.predict`."""

    def predict(batch: Batch, masks: Masks) -> dict:
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            return model.predict(model(batch, masks))

    return predict


def merge_pass(made: tuple[torch.Tensor, torch.Tensor] | None, pred: torch.Tensor, mask: torch.Tensor):
    """(prediction, hidden) so far, updated with one pass: its prediction where it hid something.

    The mask is broadcast over the prediction's trailing axes (a (B, T) bin mask over (B, T, F)
    LFP bands), so every element takes the value of the pass that hid it.
    """
    mask = mask.reshape(mask.shape + (1,) * (pred.dim() - mask.dim())).expand(pred.shape)
    old_pred, old_hidden = made if made is not None else (torch.zeros_like(pred), torch.zeros_like(mask))
    return torch.where(mask, pred, old_pred), old_hidden | mask


def collect_predictions(
    predict: Predictor,
    store: SessionStore,
    eid: str,
    specs: dict[str, ModalitySpec],
    split: str,
    tasks: list[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    options: TaskOptions = TaskOptions(),
) -> tuple[np.ndarray, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]]:
    """(trial indices, task -> modality -> (prediction, target)) over a session's split.

    A task may take several passes (one per region, say); each element's prediction comes from
    the pass that hid it. Elements no pass hid are NaN in the target, so metrics (which skip NaN
    targets) score only what was predicted. Per-trial modalities count only when hidden whole.
    """
    keys = plan_epoch(store, split, batch_size, seed=0, epoch=0, shuffle=False, sessions=[eid])
    parts: dict[str, dict[str, tuple[list, list]]] = {task: {} for task in tasks}
    trials = np.asarray([t for key in keys for t in key.trials], dtype=np.int64)
    regions = region_codes(store, eid)[1].to(device)
    for _, values in batch_loader(StoreBatches(store, specs), keys):
        batch = Batch(session=eid, values={k: v.to(device) for k, v in values.items()}, specs=specs, regions=regions)
        for task in tasks:
            try:
                passes = task_passes(task, batch, options)
            except NedsError:
                continue  # a variable or modality this session lacks
            made: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for masks in passes:
                scored = [n for n, m in masks.items() if bool(m.all()) or (not is_static(m) and bool(m.any()))]
                if not scored:
                    continue
                predictions = predict(batch, masks)
                for name in scored:
                    if name not in predictions:
                        continue
                    made[name] = merge_pass(made.get(name), predictions[name].float(), masks[name])
            for name, (pred, hidden) in made.items():
                target = batch.values[name]
                if not bool(hidden.all()):
                    target = torch.where(hidden, target.float(), torch.nan)
                preds, targets = parts[task].setdefault(name, ([], []))
                preds.append(pred.cpu().numpy())
                targets.append(target.cpu().numpy())
    results = {
        task: {name: (np.concatenate(p), np.concatenate(t)) for name, (p, t) in by_modality.items()}
        for task, by_modality in parts.items()
        if by_modality
    }
    return trials, results


# --------------------------------------------------------------------------- scoring


def trial_conditions(store: SessionStore, eid: str, trials: np.ndarray, fields: tuple[str, ...] = ()) -> np.ndarray | None:
    """(K, c) condition labels of the trials (for PSTHs), or None when a field is missing.

    No ``fields``: those the data source named in the session's meta (``psth_conditions``,
    comma-separated)."""
    fields = tuple(fields) or tuple(f for f in str(store.info(eid).meta.get("psth_conditions", "")).split(",") if f)
    table = store.trials(eid)
    if not fields or any(f not in table for f in fields):
        return None
    return np.stack([np.asarray(table[f])[trials] for f in fields], axis=1)


def score(
    metrics: dict[str, object],
    modality: str,
    spec: ModalitySpec,
    prediction: np.ndarray,
    target: np.ndarray,
    conditions: np.ndarray | None,
) -> tuple[Scored, list[str]]:
    """Every metric of the modality's kind (`ModalitySpec.metric_kind`) on one (prediction,
    target); (scored, skipped reasons)."""
    scalars, arrays, skipped = {}, {}, []
    for name, metric in metrics.items():
        if metric.kind != spec.metric_kind:
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
    specs: dict[str, ModalitySpec],
    metrics: dict[str, object],
    split: str = "test",
    tasks: Iterable[str] = ("encoding", "decoding"),
    conditions: tuple[str, ...] = (),
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    oracle: bool = True,
    options: TaskOptions = TaskOptions(),
) -> SessionResult:
    """Predict and score one session's split.

    Where the session holds the ground truth a modality's spec names as an oracle
    (`ModalitySpec.oracles`: task -> truth array), that truth is scored as a prediction of the
    modality on every element, under the oracle's task name (``oracle``: the true rates, the
    ceiling of encoding; ``oracle_behaviour``: the expected counts given only the shown
    behaviour). The ``oracle`` truth is also scored as ``oracle_<task>`` on exactly the elements
    each element task predicted. Region tasks also report each region's mean bits per spike
    (``bps_region_<name>``).
    """
    tasks = expand_tasks(tasks, specs)
    trials, predicted = collect_predictions(predict, store, eid, specs, split, tasks, batch_size, device, options)
    labels = trial_conditions(store, eid, trials, conditions)
    scored: dict[str, dict[str, Scored]] = {}
    skipped: list[str] = []
    for task, by_modality in predicted.items():
        for name, (prediction, target) in by_modality.items():
            result, why = score(metrics, name, specs[name], prediction, target, labels)
            scored.setdefault(task, {})[name] = result
            skipped.extend(f"{task}: {w}" for w in why)
    info = store.info(eid)
    for name, spec in specs.items():
        truths = {task: truth for task, truth in spec.oracles.items() if truth in info.truth}
        if not (oracle and truths and name in info.modalities and len(trials)):
            continue
        target = store.read(eid, name, trials).astype(np.float32)
        for task, truth_name in truths.items():
            truth = store.read_truth(eid, truth_name, trials).astype(np.float32)
            result, why = score(metrics, name, spec, truth, target, labels)
            scored.setdefault(task, {})[name] = result
            skipped.extend(f"{task}: {w}" for w in why)
            if task != "oracle":
                continue
            for element_task in SPIKE_TASKS:  # the ceiling on exactly what each element task predicted
                if name in predicted.get(element_task, {}):
                    result, _ = score(metrics, name, spec, truth, predicted[element_task][name][1], labels)
                    scored.setdefault(f"oracle_{element_task}", {})[name] = result
    names, codes = region_codes(store, eid)
    for task, by_modality in scored.items():
        if not task.endswith(("inter_region", "intra_region")):
            continue
        for result in by_modality.values():
            per_neuron = result.arrays.get("bps_per_neuron")
            if per_neuron is not None and len(per_neuron) == len(codes):
                codes_np = codes.numpy()
                for i, region in enumerate(names):
                    result.scalars[f"bps_region_{region}"] = nanmean_or_nan(per_neuron[codes_np == i])
    return SessionResult(eid=eid, trials=trials, tasks=scored, conditions=labels, skipped=tuple(skipped))
