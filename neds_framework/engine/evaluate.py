"""Evaluation: predictions on held-out trials, scored per session by the registered metrics.

For each session the split's trials are run through a predictor under the evaluation masks
(`neds_framework.model.eval_masks`):

    encoding     all neural activity hidden, behaviour shown: spike rates (and LFP) are scored
    decoding     all behaviour hidden, activity shown: wheel, whisker, choice, block are scored
    variables    one task per behaviour variable, ``decode_<name>``: only that variable hidden
    oracle       (sessions with ground truth) the simulator's true rates scored as a prediction:
                 the ceiling of encoding
    oracle_behaviour  (sessions with it) the behaviour-only oracle: the expected counts given
                 only the shown behaviour, the ceiling of encoding from behaviour

A modality is scored in a task only where the task hides all of it. Each metric scores the
modalities of its ``kind`` ("spikes": rates vs counts, "dynamic": per-bin values, "static":
class labels). Scalars go into one long table (session, task, modality, metric, value);
per-neuron arrays, predictions and targets are kept per session for the run record and figures.

A predictor is any callable ``(batch, masks) -> {modality: tensor}`` returning what metrics
consume (`Head.predict`): the trained model is one, the oracle and baselines are others.
"""

from __future__ import annotations

import contextlib
import sys
import zlib
from typing import Callable, Iterable

import attrs
import numpy as np
import torch

from neds_framework.data.batches import StoreBatches, batch_loader, plan_epoch, region_codes
from neds_framework.data.store import SessionStore
from neds_framework.engine.settings import TASKS
from neds_framework.errors import NedsError
from neds_framework.model.batch import ELEMENT_MASKED, NEURAL_MODALITIES, Batch, Masks, full_mask, is_static
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


@attrs.frozen
class TaskOptions:
    """Shapes of the masking-scheme evaluations (eval settings of the same names)."""

    heldout_fraction: float = 0.2  # co_smoothing: share of each session's neurons held out
    forward_bins: int = 20  # forward: the last bins predicted from the earlier ones
    intra_fraction: float = 0.5  # intra_region: share of a region hidden per pass


#: Tasks that hide part of the spikes (element masks) and score the hidden part only.
SPIKE_TASKS = ("co_smoothing", "forward", "inter_region", "intra_region")


def heldout_neurons(eid: str, n: int, fraction: float) -> torch.Tensor:
    """(N,) bool: the session's co-smoothing neurons, fixed by the eid (never by the batch)."""
    k = min(max(1, round(n * fraction)), n - 1) if n > 1 else n
    rng = np.random.default_rng(zlib.crc32(eid.encode()))
    out = torch.zeros(n, dtype=torch.bool)
    out[torch.from_numpy(rng.permutation(n)[:k])] = True
    return out


def _spike_passes(task: str, batch: Batch, options: TaskOptions) -> list[torch.Tensor]:
    """The (B, T, N) spike masks of a spike task; each neuron/bin is hidden in some pass."""
    spikes = batch.values["spikes"]
    b, t, n = spikes.shape
    device = spikes.device
    if task == "forward":
        h = min(max(options.forward_bins, 1), t - 1)
        return [(torch.arange(t, device=device) >= t - h).view(1, t, 1).expand(b, t, n)]
    if task == "co_smoothing":
        return [heldout_neurons(batch.session, n, options.heldout_fraction).to(device).view(1, 1, n).expand(b, t, n)]
    codes = batch.regions
    if codes is None or codes.numel() != n:
        raise NedsError(f"evaluation task '{task}' needs the region of each neuron of session '{batch.session}'")
    neuron_sets = []
    for region in torch.unique(codes):
        members = codes == region
        if task == "inter_region":
            neuron_sets.append(members)
            continue
        # intra_region: the region in parts, each hidden while the rest of it stays visible.
        rank = members.long().cumsum(0) - 1  # position of a member within its region
        size = int(members.sum())
        parts = max(2, round(1 / options.intra_fraction)) if size > 1 else 1
        neuron_sets += [members & (rank % parts == p) for p in range(parts)]
    return [s.view(1, 1, n).expand(b, t, n) for s in neuron_sets if bool(s.any())]


def task_passes(task: str, batch: Batch, neural: tuple[str, ...] = NEURAL_MODALITIES,
                options: TaskOptions = TaskOptions()) -> list[Masks]:
    """The masks of each forward pass of an evaluation task."""
    if task == "encoding":
        return [encoding_masks(batch, neural)]
    if task == "decoding":
        return [decoding_masks(batch, neural)]
    if task.startswith("decode_"):
        return [variable_decoding_masks(batch, task[len("decode_"):], neural)]
    if task in SPIKE_TASKS:
        if "spikes" not in batch.values:
            raise NedsError(f"evaluation task '{task}' needs spikes")
        shown = {name: full_mask(name, value, False) for name, value in batch.values.items()}
        return [{**shown, "spikes": mask} for mask in _spike_passes(task, batch, options)]
    raise NedsError(f"unknown evaluation task '{task}'; known: encoding, decoding, decode_<variable>, {', '.join(SPIKE_TASKS)}")


def task_masks(task: str, batch: Batch, neural: tuple[str, ...] = NEURAL_MODALITIES) -> Masks:
    """The masks of a one-pass task (encoding, decoding, decode_<variable>)."""
    passes = task_passes(task, batch, neural)
    if len(passes) != 1:
        raise NedsError(f"evaluation task '{task}' takes {len(passes)} passes; use task_passes")
    return passes[0]


def expand_tasks(tasks: Iterable[str], modalities: Iterable[str], neural: tuple[str, ...] = NEURAL_MODALITIES) -> list[str]:
    """The recipe's task names with `variables` expanded to one ``decode_<name>`` per behaviour."""
    out = []
    for task in tasks:
        if task == "variables":
            out.extend(f"decode_{name}" for name in modalities if name not in neural)
        elif task in ("encoding", "decoding") or task in SPIKE_TASKS:
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
    modalities: list[str],
    split: str,
    tasks: list[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    neural: tuple[str, ...] = NEURAL_MODALITIES,
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
    for _, values in batch_loader(StoreBatches(store, modalities), keys):
        batch = Batch(session=eid, values={k: v.to(device) for k, v in values.items()}, regions=regions)
        for task in tasks:
            try:
                passes = task_passes(task, batch, neural, options)
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
    options: TaskOptions = TaskOptions(),
) -> SessionResult:
    """Predict and score one session's split.

    Where the session has ground truth, the true rates are scored too: as `oracle` on every
    spike, and as `oracle_<task>` on exactly the elements each spike task predicted. Where it
    also has the behaviour-only oracle (truth "behaviour_rates": the expected counts given only
    the shown behaviour), that is scored as `oracle_behaviour` on every spike, like `oracle`.
    Region tasks also report each region's mean bits per spike (``bps_region_<name>``).
    """
    tasks = expand_tasks(tasks, modalities, neural)
    trials, predicted = collect_predictions(predict, store, eid, modalities, split, tasks, batch_size, device, neural, options)
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
        for task in SPIKE_TASKS:
            if "spikes" in predicted.get(task, {}):
                target = predicted[task]["spikes"][1]
                result, _ = score(metrics, "spikes", truth, target, labels)
                scored[f"oracle_{task}"] = {"spikes": result}
        if "behaviour_rates" in info.truth:  # the ceiling of encoding from behaviour alone
            shown = store.read_truth(eid, "behaviour_rates", trials).astype(np.float32)
            result, why = score(metrics, "spikes", shown, counts, labels)
            scored["oracle_behaviour"] = {"spikes": result}
            skipped.extend(f"oracle_behaviour: {w}" for w in why)
    names, codes = region_codes(store, eid)
    for task, by_modality in scored.items():
        per_neuron = by_modality.get("spikes").arrays.get("bps_per_neuron") if "spikes" in by_modality else None
        if task.endswith(("inter_region", "intra_region")) and per_neuron is not None:
            codes_np = codes.numpy()
            for i, name in enumerate(names):
                by_modality["spikes"].scalars[f"bps_region_{name}"] = nanmean_or_nan(per_neuron[codes_np == i])
    return SessionResult(eid=eid, trials=trials, tasks=scored, conditions=labels, skipped=tuple(skipped))


# --------------------------------------------------------------------------- tables


def nanmean_or_nan(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


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


def print_skipped(results: list[SessionResult], file=sys.stderr) -> None:
    reasons = sorted({why for r in results for why in r.skipped})
    for why in reasons:
        print(f"note: not scored: {why}", file=file)
