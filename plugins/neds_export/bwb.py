"""A run's test-split predictions in IBL BrainWideBench's submission layout.

Layout and file contents (ibl-bwb-eval 0.1.0, its scorers `ibl_bwb_eval.scoring.ts1` / `ts2`):

    <out>/<label>/<task_id>/<recording_id>/seed_<seed>.safetensors
      header metadata: label, task (the task id), recording_id (the session's eid), seed, writer
      TS1 (behaviour decoding; trials aligned by ``trial_id``):
        predictions   float32 (N, T, D): per bin for wheel_speed / whisker_motion_energy (D = 1),
                      raw logits (N, 1, 2) for choice
        trial_id      int64 (N,): the trial's row in the session's full trials table
        timestamps    float64 (N, T): each predicted bin's centre in session time
      TS2 (neural activity; windows aligned by ``window_timestamps``):
        predictions   float32 (N, T, U): log-rates (per 20 ms bin), of the held-out neurons
                      (co_smoothing) or of every neuron in the final bins (forecasting)
        window_timestamps  float64 (N,): the window's start (align event + window start)
        unit_id       uint8 (U, width): the neurons' uuids, ASCII, NUL-padded (BWB's id encoding)

With ``truth`` the matching ground truth is written as the scorers read it,
``<truth>/<task_id>/<recording_id>/ground_truth.safetensors`` (TS1: ``values``, ``trial_id``;
TS2: ``targets``, ``window_timestamps``), so a run scores offline. Wheel and whisker stay in the
store's units, min-max scaled with the train split's statistics (``scaling_min`` /
``scaling_max`` in the header: physical = scaled × (max − min) + min). R² is the same in either
unit, but the scorer sums in float32, and raw motion energy (values in the thousands) costs its
R² about 1e-6 of cancellation error that the scaled values do not.

What maps to what: decoding's ``choice`` -> ts1-choice, ``wheel`` -> ts1-wheel_speed, ``whisker``
-> ts1-whisker_motion_energy (the block prior is not a BWB task); the ``co_smoothing`` and
``forward`` evaluations of the spike counts -> ts2-co_smoothing and ts2-forecasting, with the
held-out neurons and bins of the run's own eval settings. These are NEDS's trials and 2 s window
on this framework's 70/10/20 split, not BWB's evaluation recordings, splits and 1 s windows:
scores are comparable with each other and with our metrics, not with the leaderboard.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from neds_framework.api import (EvalSettings, NedsError, SessionStore, TaskOptions, atomic_path, autocast_factory,
                                collect_predictions, framework_version, modality_specs, open_trained, resolve_amp,
                                store_path)

TS1_TASKS = {"choice": "ts1-choice", "wheel": "ts1-wheel_speed", "whisker": "ts1-whisker_motion_energy"}
TS2_TASKS = {"co_smoothing": "ts2-co_smoothing", "forward": "ts2-forecasting"}


def encode_ids(ids) -> torch.Tensor:
    """ASCII ids as an (n, width) uint8 matrix, NUL-padded (safetensors holds no strings)."""
    rows = [str(i).encode("ascii") for i in ids]
    out = np.zeros((len(rows), max((len(r) for r in rows), default=1)), dtype=np.uint8)
    for k, row in enumerate(rows):
        out[k, : len(row)] = np.frombuffer(row, dtype=np.uint8)
    return torch.from_numpy(out)


def raw_predictor(model, autocast=None):
    """The model's raw outputs (log-rates, values, logits), not `Head.predict`'s."""

    def predict(batch, masks):
        with torch.no_grad(), (autocast() if autocast else contextlib.nullcontext()):
            return dict(model(batch, masks).predictions)

    return predict


def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> Path:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    return path


def session_files(store, eid: str, specs: dict, predicted: dict, trials: np.ndarray) -> dict[str, dict]:
    """task_id -> {'pred': tensors, 'truth': tensors} for one session's collected predictions."""
    info = store.info(eid)
    table = store.trials(eid)
    bin_size = float(info.meta.get("bin_size", 0.02))
    start = float(info.meta.get("window_start", -0.5))
    align = str(info.meta.get("align_event", "stimOn_times"))
    if align not in table:
        raise NedsError(f"session {eid}: the store's trials lack {align}, the align event; prepare the store again")
    onset = np.asarray(table[align], dtype=np.float64)[trials] + start
    trial_id = np.asarray(table.get("trial_index", np.arange(info.n_trials)), dtype=np.int64)[trials]
    out: dict[str, dict] = {}
    decoded = predicted.get("decoding", {})
    for name, task_id in TS1_TASKS.items():
        if name not in decoded or name not in specs:
            continue
        pred, target = decoded[name]
        if specs[name].values == "classes":
            pred_t = torch.from_numpy(pred.astype(np.float32)).reshape(len(trials), 1, -1)
            values = torch.from_numpy(target.astype(np.int64)).reshape(len(trials), 1)
            stamps = onset[:, None] - start  # the align event itself
        else:  # the store's min-max scaled units (see the module's docstring)
            pred_t = torch.from_numpy(pred.astype(np.float32)).reshape(len(trials), -1, 1)
            values = torch.from_numpy(target.astype(np.float32)).reshape(len(trials), -1, 1)
            stamps = onset[:, None] + (np.arange(pred_t.shape[1]) + 0.5) * bin_size
        ids = torch.from_numpy(trial_id)
        scale = info.scaling.get(name, {})
        meta = {f"scaling_{k}": repr(float(v)) for k, v in scale.items()}  # physical = scaled * (max - min) + min
        out[task_id] = {"pred": {"predictions": pred_t, "trial_id": ids, "timestamps": torch.from_numpy(stamps)},
                        "truth": {"values": values, "trial_id": ids}, "meta": meta}
    uuids = np.asarray(store.neurons(eid).get("uuid", np.arange(info.n_neurons)), dtype=str)
    for task, task_id in TS2_TASKS.items():
        counts = [n for n, spec in specs.items() if spec.neural and spec.values == "counts" and n in predicted.get(task, {})]
        if not counts:
            continue
        pred, target = predicted[task][counts[0]]
        hidden = ~np.isnan(target)
        if task == "co_smoothing":  # the held-out neurons: hidden in every bin of every trial
            keep = hidden.all(axis=(0, 1))
            pred, target, units = pred[:, :, keep], target[:, :, keep], uuids[keep]
        else:  # forecasting: the final bins, hidden for every neuron
            keep = hidden.all(axis=(0, 2))
            pred, target, units = pred[:, keep], target[:, keep], uuids
        if not pred.size:
            continue
        stamps = torch.from_numpy(onset.copy())
        out[task_id] = {"pred": {"predictions": torch.from_numpy(pred.astype(np.float32)), "window_timestamps": stamps,
                                 "unit_id": encode_ids(units)},
                        "truth": {"targets": torch.from_numpy(target.astype(np.float32)), "window_timestamps": stamps},
                        "meta": {"units": "log expected spike count per bin", "bin_size_s": repr(bin_size)}}
    return out


def export_bwb(runs: list[Path], out: Path, label: str, registries, truth: Path | None = None,
               batch_size: int = 64, device: str = "cpu") -> list[Path]:
    """Write every run's (one seed each) test-split predictions; the paths written."""
    seeds: dict[int, Path] = {}
    written: list[Path] = []
    for run in runs:
        trained = open_trained(run, registries)
        recipe = trained.recipe
        seed = int(recipe.run.seed)
        if seed in seeds:
            raise NedsError(f"export: {run} and {seeds[seed]} both have seed {seed}; a BrainWideBench label takes one run per seed")
        seeds[seed] = run
        path = store_path(recipe)
        if not path.exists():
            raise NedsError(f"export: {run} was trained on the store {path}, which is not here; run from the folder the run "
                            "was made in, or prepare the store again (stage prepare)")
        store = SessionStore(path)
        model = trained.model(registries).to(device)
        specs = modality_specs(recipe.modalities, registries)
        settings = recipe.section("eval") or EvalSettings()
        options = TaskOptions(settings.heldout_fraction, settings.forward_bins, settings.intra_fraction)
        amp, _ = resolve_amp(settings.amp, torch.device(device), "eval.amp")
        predict = raw_predictor(model, autocast_factory(amp, torch.device(device)))
        eids = [eid for eid in store.eids if eid in trained.sessions]
        for eid in eids:
            trials, predicted = collect_predictions(predict, store, eid, specs, "test", ["decoding", *TS2_TASKS],
                                                    batch_size, device, options)
            for task_id, files in session_files(store, eid, specs, predicted, trials).items():
                meta = {"label": label, "task": task_id, "recording_id": eid, "seed": str(seed),
                        "writer": f"neds-framework {framework_version}", "run": str(run), **files["meta"]}
                written.append(_save(out / label / task_id / eid / f"seed_{seed}.safetensors", files["pred"], meta))
                if truth is not None:
                    written.append(_save(truth / task_id / eid / "ground_truth.safetensors", files["truth"],
                                         {"task": task_id, "recording_id": eid, "writer": f"neds-framework {framework_version}"}))
        store.close()
    return written
