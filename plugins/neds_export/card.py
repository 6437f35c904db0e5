"""A model card for a run, from its record: Markdown for people, JSON for BrainWideBench.

``MODEL_CARD.md`` covers the data (source, sessions, trials per split, neurons), the recipe (the
main settings and the whole resolved recipe), the metrics with their s.e.m. over sessions, compute
and wall time, versions, and known limitations. ``bwb_metadata.json`` holds BrainWideBench's
model fields (n_parameters, temporal_context_s, is_pretrained, pretrained_in_modalities,
pretrained_out_modalities, pretraining_data) and, per task the run can submit, the submission's
methodology fields (training_paradigm, supervision_regime, calibration, finetuning_strategy,
extra_input_modality), with the values of BrainWideBench's own vocabularies. A value that cannot
be derived from the run is null and said so in ``notes``.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from neds_framework.api import SessionStore, atomic_write_text, get_plugins, modality_specs, read_table, store_path, summarise

CARD_NAME = "MODEL_CARD.md"
BWB_NAME = "bwb_metadata.json"

# Our modality roles in BrainWideBench's modality vocabulary (its Modality enum).
BWB_MODALITY = {"spikes": "spikes", "lfp": "lfp"}
TS1 = {"choice": "ts1-choice", "wheel": "ts1-wheel_speed", "whisker": "ts1-whisker_motion_energy"}
TS2 = {"co_smoothing": "ts2-co_smoothing", "forward": "ts2-forecasting"}


def _bwb_modality(name: str, spec) -> str:
    return BWB_MODALITY.get(name, "spikes" if spec.neural and spec.values == "counts" else
                            "lfp" if spec.neural else "behavior")


def parameter_counts(record) -> tuple[int | None, int | None]:
    """(all parameters, non-embedding parameters) of the run's model, from its checkpoint."""
    name = "best" if "best" in record.checkpoints else "last" if "last" in record.checkpoints else None
    if name is None:
        return None, None
    state = record.checkpoint(name)["model"]
    total = sum(int(v.numel()) for v in state.values())
    embedding = sum(int(v.numel()) for k, v in state.items() if "embedding" in k.split(".")[0] or ".embedding" in k)
    return total, total - embedding


def card_facts(run_dir: Path, record, recipe, registries, store=None) -> dict:
    """Everything the card says, as plain data."""
    specs = modality_specs(recipe.modalities, registries)
    data = recipe.data
    source = getattr(getattr(data, "source", None), "name", None) or "unknown"
    sessions = record.meta_value("model_sessions") or {}
    rows = read_table(record, "test")
    summary = summarise(rows)
    evaluated = sorted({r[0] for r in rows})
    per_session = []
    simulated = False
    if store is not None:
        for eid in store.eids:
            if eid not in sessions and eid not in evaluated:
                continue
            info = store.info(eid)
            simulated = simulated or bool(info.truth)
            per_session.append({"eid": eid, "lab": str(info.meta.get("lab", "")), "subject": str(info.meta.get("subject", "")),
                                "neurons": info.n_neurons, "trials": info.n_trials,
                                **{split: int(len(store.split(eid, split))) for split in ("train", "val", "test")}})
    n_bins = int(record.meta_value("n_bins", 0) or 0)
    bin_size = float(getattr(getattr(data, "source", None), "bin_size", 0.02) or 0.02)
    total, non_embedding = parameter_counts(record)
    epochs = record.history["epoch"]
    speed = [v for v in epochs.get("trials_per_s", []) if np.isfinite(v)]
    return {
        "run": str(run_dir), "source": source, "sessions": per_session, "n_model_sessions": len(sessions),
        "evaluated_sessions": evaluated, "simulated": simulated, "summary": summary, "specs": specs,
        "n_bins": n_bins, "bin_size": bin_size, "parameters": total, "non_embedding_parameters": non_embedding,
        "pretrained": record.meta_value("pretrained"), "train_seconds": record.meta_value("train_seconds"),
        "epochs_run": len(epochs.get("epoch", [])), "trials_per_s": float(np.mean(speed)) if speed else None,
        "amp": record.meta_value("amp"), "eval_amp": record.meta_value("eval_amp"),
        "world_size": record.meta_value("world_size"), "seed": record.meta_value("seed", recipe.run.seed),
        "framework_version": record.meta_value("framework_version"), "torch_version": record.meta_value("torch_version"),
        "plugins": record.meta_value("plugins") or {}, "recipe_text": str(record.meta.get("recipe", "")),
        "recipe": recipe,
    }


def bwb_metadata(facts: dict) -> dict:
    """BrainWideBench's model fields and each submittable task's methodology fields."""
    specs = facts["specs"]
    recipe = facts["recipe"]
    pretrained = facts["pretrained"] is not None
    neural_in = sorted({_bwb_modality(n, s) for n, s in specs.items() if s.neural})
    out_modalities = sorted({_bwb_modality(n, s) for n in specs for s in [specs[n]]})  # multi-task masking predicts all
    finetune = recipe.section("finetune") if "finetune" in getattr(recipe, "sections", {}) else None
    notes = []
    if pretrained:
        paradigm = "TSS"  # NEDS's masking supervises spikes and behaviour alike: both suites' targets
        strategy = ["full_finetuning"] if getattr(finetune, "train_only", "all") == "all" else ["other"]
        if strategy == ["other"]:
            notes.append("finetuning_strategy other: only the new sessions' input/output layers and embedding were trained")
    elif facts["n_model_sessions"] <= 1:
        paradigm, strategy = "single_session", []
    else:
        paradigm, strategy = None, []
        notes.append(f"training_paradigm null: trained from scratch on {facts['n_model_sessions']} sessions together, "
                     "which is none of TSS, TSU or single_session; choose when submitting")
    evaluated = {(task, modality) for task, modality, *_ in facts["summary"]}
    tasks = {}
    for modality, task_id in TS1.items():
        if ("decoding", modality) in evaluated:
            tasks[task_id] = {"extra_input_modality": [m for m in neural_in if m != "spikes"]}
    counts = [n for n, s in specs.items() if s.neural and s.values == "counts"]
    for task, task_id in TS2.items():
        if any((task, n) in evaluated for n in counts):  # behaviour is shown in these passes
            extra = sorted({m for m in neural_in if m != "spikes"} | ({"behavior"} if any(not s.neural for s in specs.values()) else set()))
            tasks[task_id] = {"extra_input_modality": extra}
    for fields in tasks.values():
        fields.update(training_paradigm=paradigm, supervision_regime="full", calibration="transductive",
                      finetuning_strategy=strategy)
    data = (f"{facts['n_model_sessions']} session(s) from the '{facts['source']}' data source"
            + (" (simulated)" if facts["simulated"] else ""))
    return {
        "model": {
            "name": Path(facts["run"]).name,
            "n_parameters": facts["non_embedding_parameters"],
            "temporal_context_s": round(facts["n_bins"] * facts["bin_size"], 6) if facts["n_bins"] else None,
            "is_pretrained": pretrained,
            "pretrained_in_modalities": out_modalities if pretrained else [],
            "pretrained_out_modalities": out_modalities if pretrained else [],
            "pretraining_data": f"pretrained run {facts['pretrained']}" if pretrained else None,
            "training_data": data,
            "link_project": None, "link_code": None, "link_weights": None, "publication_doi": None,
        },
        "tasks": tasks,
        "notes": notes,
    }


def _fmt(value: float) -> str:
    return "nan" if not np.isfinite(value) else f"{value:.4f}"


def card_markdown(facts: dict, bwb: dict) -> str:
    recipe = facts["recipe"]
    model = getattr(recipe.model, "config", None)
    arch = ", ".join(f"{k} {getattr(model, k)}" for k in ("mode", "layers", "hidden", "heads", "ffn", "dropout") if hasattr(model, k))
    train = recipe.section("finetune") if "finetune" in recipe.sections else recipe.section("train")
    lines = [f"# Model card: {Path(facts['run']).name}", "",
             f"NEDS (multimodal neural encoding and decoding) trained by neds-framework {facts['framework_version']}; "
             f"written from `{facts['run']}/run.h5`.", "", "## Model", "",
             f"- Architecture: {recipe.model.name}" + (f" ({arch})" if arch else ""),
             f"- Parameters: {facts['parameters']:,} in all, {facts['non_embedding_parameters']:,} outside embeddings"
             if facts["parameters"] is not None else "- Parameters: (no checkpoint: a fitted baseline)",
             f"- Modalities: {', '.join(f'{n} ({s.role}, {s.timing})' for n, s in facts['specs'].items())}",
             f"- Temporal context: {bwb['model']['temporal_context_s']} s ({facts['n_bins']} bins of {facts['bin_size'] * 1000:g} ms)",
             f"- Pretrained: {'yes, finetuned from ' + str(facts['pretrained']) if facts['pretrained'] else 'no (trained from scratch)'}",
             "", "## Data", "",
             f"Data source `{facts['source']}`; {facts['n_model_sessions']} session(s) in the model"
             + ("; **simulated sessions** (generated by neds-run synth)" if facts["simulated"] else "") + ".", ""]
    if facts["sessions"]:
        lines += ["| session | lab | subject | neurons | trials | train | val | test |", "|---|---|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {s['eid']} | {s['lab']} | {s['subject']} | {s['neurons']} | {s['trials']} | {s['train']} | {s['val']} | {s['test']} |"
                  for s in facts["sessions"]]
    else:
        lines.append("(the prepared store was not found, so per-session sizes are not listed)")
    lines += ["", "Splits: each session's trials split 70/10/20 (train/val/test) by a seed derived from its eid; "
              "behaviour scaled with train-split statistics only.", "", "## Recipe", ""]
    if train is not None:
        lines.append(f"- Training: {train.epochs} epochs (ran {facts['epochs_run']}), batch {train.batch_size}, "
                     f"{train.optimizer.name} lr {train.optimizer.lr:g}, selection by {train.select}, seed {facts['seed']}")
    if recipe.masker is not None:
        lines.append(f"- Masking: {recipe.masker.name}")
    lines += ["", "<details><summary>The resolved recipe</summary>", "", "```yaml", facts["recipe_text"].rstrip(), "```", "",
              "</details>", "", "## Metrics (test split)", ""]
    if facts["summary"]:
        lines += ["| task | modality | metric | mean | ± s.e.m. | sessions |", "|---|---|---|---:|---:|---:|"]
        lines += [f"| {t} | {m} | {k} | {_fmt(mean)} | {'' if not np.isfinite(sem) else _fmt(sem)} | {n} |"
                  for t, m, k, mean, sem, n in facts["summary"]]
        lines += ["", "Mean ± s.e.m. over sessions (one seed). bps: bits per spike against each neuron's mean rate; R² over "
                  "all test trials × bins; accuracies by argmax."]
    else:
        lines.append("(not evaluated yet: run the eval stage)")
    seconds = facts["train_seconds"]
    lines += ["", "## Compute", "",
              f"- Training wall time: {seconds / 60:.1f} min" if seconds else "- Training wall time: not recorded",
              f"- Throughput: {facts['trials_per_s']:.1f} trials/s (mean over epochs)" if facts["trials_per_s"] else "- Throughput: not recorded",
              f"- Precision: train {facts['amp'] or '?'}, eval {facts['eval_amp'] or '?'}; processes: {facts['world_size'] or 1}",
              f"- Machine of this card: {platform.machine()} {platform.system()}, Python {platform.python_version()}",
              "", "## Versions", "",
              f"- neds-framework {facts['framework_version']}, torch {facts['torch_version']}"]
    lines += [f"- plugin {name}: {what}" for name, what in sorted(facts["plugins"].items())]
    lines += ["", "## Known limitations", ""]
    if facts["simulated"]:
        lines.append("- Trained and scored on simulated sessions: the numbers say how well the model recovers the "
                     "simulator's structure, not how it does on real recordings.")
    lines += ["- One seed: the s.e.m. is over sessions only; train more seeds for seed variance.",
              "- Test trials are this framework's random 70/10/20 split of NEDS's trials (2 s window), not "
              "BrainWideBench's evaluation recordings, splits and 1 s windows.",
              "- Per-session input/output layers: a new session needs finetuning (stage finetune) before it can be scored.",
              "", "## BrainWideBench metadata", "", f"In `{BWB_NAME}` beside this card."]
    lines += [f"- note: {note}" for note in bwb["notes"]]
    return "\n".join(lines) + "\n"


def write_card(run_dir: Path, record, recipe, registries) -> list[Path]:
    """Write the card and the metadata beside run.h5 (per-session sizes from the recipe's store, when it is here)."""
    path = store_path(recipe)
    store = SessionStore(path) if path.exists() else None
    try:
        facts = card_facts(run_dir, record, recipe, registries, store)
    finally:
        if store is not None:
            store.close()
    bwb = bwb_metadata(facts)
    card, meta = Path(run_dir) / CARD_NAME, Path(run_dir) / BWB_NAME
    atomic_write_text(card, card_markdown(facts, bwb))
    atomic_write_text(meta, json.dumps(bwb, indent=2) + "\n")
    return [card, meta]


class CardReporter:
    """``MODEL_CARD.md`` and ``bwb_metadata.json`` in the run folder, after each evaluation."""

    def __init__(self, settings=None):
        self.settings = settings

    def __call__(self, report) -> None:
        report.written.extend(write_card(report.run_dir, report.record, report.recipe, _registries()))


def _registries():
    return get_plugins().registries
