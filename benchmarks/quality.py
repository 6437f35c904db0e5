"""Quality on generated sessions with ground truth: NEDS, the baselines and the oracle, side by side.

Every arm is a real `neds-run` on the same generated sessions and splits, scored by the same
evaluation (encoding: all spikes hidden; decoding: all behaviour hidden):

    neds (expanded)    single-session NEDS, the reference's static-token layout (one run per session)
    neds (compact)     the same with one token per trial variable
    neds (multi)       pretrained on a pool of other generated sessions, finetuned on each one
    ridge_decoder      linear decoders (behaviour)
    rrr_encoder        reduced-rank regression (spikes)
    glm_encoder        Poisson GLM (spikes)
    oracle             the simulator's true rates (spikes)

Scores are averaged per session, then mean ± s.e.m. over sessions × seeds.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NEDS_RUN = str(Path(sys.executable).with_name("neds-run"))
COLUMNS = [
    ("encoding", "spikes", "bps"),
    ("decoding", "choice", "accuracy"),
    ("decoding", "choice", "balanced_accuracy"),
    ("decoding", "block", "accuracy"),
    ("decoding", "block", "balanced_accuracy"),
    ("decoding", "wheel", "r2"),
    ("decoding", "whisker", "r2"),
]
# Evaluated sessions; a separate pool (another lab: new eids, the same region tuning families) to
# pretrain the multi-session model on, as the paper pretrains on some animals and finetunes on others.
QUICK = {"sessions": 2, "pool": 2, "trials": 100, "units": 40, "epochs": 2, "pretrain_epochs": 2,
         "layers": 1, "hidden": 32, "seeds": [0], "jobs": 2}
FULL = {"sessions": 4, "pool": 8, "trials": 300, "units": 150, "epochs": 40, "pretrain_epochs": 25,
        "layers": 2, "hidden": 64, "seeds": [0, 1], "jobs": 2}


def _neds_run(workdir: Path, name: str, body: str, threads: int = 2) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"extends: {ROOT / 'recipes' / 'quickstart.yaml'}\n" + textwrap.dedent(body))
    sets = ["train.progress=false", f"train.threads={threads}", f"finetune.threads={threads}", f"eval.threads={threads}", f"fit.threads={threads}"]
    cmd = [NEDS_RUN, str(path)] + [a for s in sets for a in ("--set", s)]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return workdir / "runs" / name


def _rows(run_dir: Path) -> list[tuple]:
    from neds_framework.engine.eval_stage import read_table
    from neds_framework.engine.record import RunRecord

    return read_table(RunRecord.load(run_dir))


def per_neuron_bps(run_dir: Path) -> tuple[list[float], list[float]]:
    """(model, oracle) bits per spike of every scored neuron of a run, paired neuron by neuron."""
    from neds_framework.engine.record import RunRecord

    results = RunRecord.load(run_dir).results
    model, oracle = [], []
    for group, arrays in results.items():
        if group.startswith("eval/test/") and group.endswith("/encoding/spikes") and "bps_per_neuron" in arrays:
            truth = results.get(group[: -len("encoding/spikes")] + "oracle/spikes", {}).get("bps_per_neuron")
            if truth is not None and len(truth) == len(arrays["bps_per_neuron"]):
                model += np.asarray(arrays["bps_per_neuron"], dtype=float).tolist()
                oracle += np.asarray(truth, dtype=float).tolist()
    return model, oracle


def run_quality(workdir: Path, quick: bool) -> dict:
    """{arm: {column: [per-(session, seed) values]}}, the oracle's, the region probe and per-neuron pairs."""
    p = QUICK if quick else FULL
    model = f"{{layers: {p['layers']}, hidden: {p['hidden']}, heads: 4, ffn: {2 * p['hidden']}}}"
    threads = max(1, 2 // p["jobs"])

    def data(store: str, cache: str, eids: list[str] | None = None) -> str:
        n, seed, lab = (p["sessions"], 0, "synthlab") if cache == "gen" else (p["pool"], 1, "poollab")
        synth = f"{{sessions: {n}, seed: {seed}, trials: {p['trials']}, units: {p['units']}, lab: {lab}}}"
        chosen = f", eids: [{', '.join(eids)}]" if eids else ""
        return f"data: {{store: {store}, source: {{one: {{cache_dir: {cache}}}, synthesize: {synth}{chosen}}}}}"

    from neds_framework.data.store import SessionStore

    _neds_run(workdir, "prepare", f"stages: [prepare]\nrun: {{name: prepare}}\n{data('store.h5', 'gen')}\n")
    _neds_run(workdir, "prepare_pool", f"stages: [prepare]\nrun: {{name: prepare_pool}}\n{data('pool.h5', 'pool')}\n")
    eids = SessionStore(workdir / "store.h5").eids
    for i, eid in enumerate(eids):  # one store per session, shared by every arm trained on it alone
        _neds_run(workdir, f"prepare_{i}", f"stages: [prepare]\nrun: {{name: prepare_{i}}}\n{data(f'store_{i}.h5', 'gen', [eid])}\n")

    static = lambda layout, n: f"{{tokenizer: {{name: static, layout: {layout}}}, head: {{name: classification, n_classes: {n}}}}}"  # noqa: E731
    pretrain, single, finetune = {}, {}, {}
    for seed in p["seeds"]:
        pretrain[seed] = (f"pre_s{seed}", f"""
            stages: [train]
            run: {{name: pre_s{seed}, seed: {seed}}}
            {data('pool.h5', 'pool')}
            model: {model}
            train: {{epochs: {p['pretrain_epochs']}}}
            """)
        for i, eid in enumerate(eids):
            for layout in ("expanded", "compact"):  # single-session models
                name = f"neds_{layout}_s{seed}_{i}"
                single[(f"neds ({layout})", seed, i)] = (name, f"""
                    stages: [train, eval]
                    run: {{name: {name}, seed: {seed}}}
                    {data(f'store_{i}.h5', 'gen', [eid])}
                    model: {model}
                    modalities: {{choice: {static(layout, 2)}, block: {static(layout, 3)}}}
                    train: {{epochs: {p['epochs']}}}
                    eval: {{figures: false}}
                    """)
            name = f"multi_s{seed}_{i}"  # the pool's model, finetuned on this session
            finetune[("neds (multi)", seed, i)] = (name, f"""
                stages: [finetune, eval]
                run: {{name: {name}, seed: {seed}}}
                {data(f'store_{i}.h5', 'gen', [eid])}
                model: {model}
                finetune: {{pretrained: runs/pre_s{seed}, epochs: {p['epochs']}, optimizer: {{lr: 3.0e-3}}, progress: false}}
                eval: {{figures: false}}
                """)
    baselines = {name: (name, f"""
        stages: [fit]
        run: {{name: {name}}}
        {data('store.h5', 'gen')}
        model: {{name: {name}}}
        fit: {{figures: false}}
        """) for name in ("ridge_decoder", "rrr_encoder", "glm_encoder")}

    # Independent runs go `jobs` at a time (one thread each: small models use 2 cores better as 2
    # processes); the longest (pretraining) first, each finetune as soon as its pretraining is done.
    with ThreadPoolExecutor(max_workers=p["jobs"]) as pool:
        run = lambda job: pool.submit(_neds_run, workdir, *job, threads)  # noqa: E731
        pre_done = {seed: run(job) for seed, job in pretrain.items()}
        single_done = {key: run(job) for key, job in single.items()}
        base_done = {key: run(job) for key, job in baselines.items()}
        ft_done = {}
        for (arm, seed, i), job in finetune.items():
            pre_done[seed].result()
            ft_done[(arm, seed, i)] = run(job)
        results = {**{k: f.result() for k, f in single_done.items()}, **{k: f.result() for k, f in ft_done.items()}}
        base_results = {k: f.result() for k, f in base_done.items()}

    values: dict[str, dict] = {}
    for arm, run_dir in base_results.items():
        for _, task, modality, metric, value in _rows(run_dir):
            if (task, modality, metric) in COLUMNS:
                values.setdefault(arm, {}).setdefault("/".join((task, modality, metric)), []).append(value)
            if (task, modality, metric) == ("oracle", "spikes", "bps") and arm == "rrr_encoder":  # once per session
                values.setdefault("oracle", {}).setdefault("encoding/spikes/bps", []).append(value)
    per_neuron = {}
    for (arm, seed, i), run_dir in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        for _, task, modality, metric, value in _rows(run_dir):
            if (task, modality, metric) in COLUMNS:
                values.setdefault(arm, {}).setdefault("/".join((task, modality, metric)), []).append(value)
        if seed == p["seeds"][0]:
            model_bps, oracle_bps = per_neuron_bps(run_dir)
            per_neuron.setdefault(arm, {"model": [], "oracle": []})
            per_neuron[arm]["model"] += model_bps
            per_neuron[arm]["oracle"] += oracle_bps
    glm_model, glm_oracle = per_neuron_bps(base_results["glm_encoder"])
    per_neuron["glm_encoder"] = {"model": glm_model, "oracle": glm_oracle}
    from region_probe import region_probe  # the emergent region code, read from each pretrained model's readout

    values["region probe"] = {"runs": [region_probe(workdir / "runs" / f"pre_s{seed}", workdir / "pool.h5")
                                       for seed in p["seeds"]]}
    values["per neuron"] = per_neuron
    return values


def mean_sem(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    sem = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else float("nan")
    return statistics.fmean(finite), sem, len(finite)


def table(values: dict) -> tuple[list[str], list[list[str]], dict]:
    header = ["model", *("/".join(c) for c in COLUMNS)]
    values = {k: v for k, v in values.items() if k not in ("region probe", "per neuron")}
    order = ["neds (expanded)", "neds (compact)", "neds (multi)", "ridge_decoder", "rrr_encoder", "glm_encoder", "oracle"]
    rows, numbers = [], {}
    for arm in [a for a in order if a in values]:
        cells = [arm]
        for column in header[1:]:
            mean, sem, n = mean_sem(values[arm].get(column, []))
            numbers[(arm, column)] = (mean, sem, n)
            cells.append("-" if n == 0 else (f"{mean:.3f}" if math.isnan(sem) else f"{mean:.3f} ± {sem:.3f}"))
        rows.append(cells)
    return header, rows, numbers


def sanity(numbers: dict) -> list[str]:
    """What must hold in any run: numbers where there are values, and the oracle on top of bps."""
    problems = []
    oracle = numbers.get(("oracle", "encoding/spikes/bps"), (float("nan"), 0, 0))[0]
    if not math.isfinite(oracle):
        problems.append("no oracle bits per spike")
    for (arm, column), (mean, _, n) in numbers.items():
        if n and not math.isfinite(mean):
            problems.append(f"{arm} {column} is NaN")
        if column == "encoding/spikes/bps" and n and arm != "oracle" and math.isfinite(oracle) and mean > oracle:
            problems.append(f"{arm} scores {mean:.3f} bits per spike, above the oracle's {oracle:.3f}")
    return problems
