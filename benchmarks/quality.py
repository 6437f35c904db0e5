"""Quality on generated sessions with ground truth: NEDS, the reference, the baselines and the oracles, side by side.

Every arm runs on the same generated sessions and splits and is scored by the same metric
plugins (encoding: all spikes hidden; decoding: all behaviour hidden):

    neds single        single-session NEDS, the default recipe's settings (one run per session)
    neds multi         pretrained on a pool of other generated sessions (another lab), finetuned on each one
    reference          the reference implementation (github yzhang511/NEDS, from the checkout path given
                       with --reference), its own model, masking and training step, on the same prepared
                       session, splits and number of steps as `neds single` (benchmarks/reference.py)
    ridge_decoder      linear decoders (behaviour)
    rrr_encoder        reduced-rank regression (spikes)
    glm_encoder        Poisson GLM (spikes)
    oracle             the simulator's true rates (spikes): they also see the stimulus and the latent
    oracle behaviour   the best rates predictable from the behaviour a model sees (the latent and the
                       stimulus marginalised out): the reachable ceiling of encoding

Scores are averaged per session, then mean ± s.e.m. over sessions × seeds. Matched pairs compare
`neds multi` with `neds single` on the same (session, seed), and `neds single` with the reference on
the reference's own (session, seed) pairs (the row "neds single, reference's pairs"); learning curves are validation bits
per spike and wheel R² against the optimiser step, for NEDS and the reference.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from neds_framework.atomic import atomic_write_text

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
MATCHED = "neds single, reference's pairs"  # neds single on exactly the (session, seed) pairs the reference ran
ORDER = ["neds single", "neds multi", MATCHED, "reference", "ridge_decoder", "rrr_encoder", "glm_encoder", "oracle", "oracle behaviour"]
# Evaluated sessions; a separate pool (another lab: new eids, the same region tuning families) to
# pretrain the multi-session model on, as the paper pretrains on some animals and finetunes on others.
# `epochs` is the single-session budget (the default recipe's model at this size takes about
# 5 CPU-minutes per session for it); the reference gets the same number of steps. The pool is
# pretrained once per seed in `pretrain_seeds`; a finetuning seed outside it uses the first one.
# 30 pool epochs left the pretrained model at chance on choice and block; 80 passed the plateau
# (benchmarks/results/pretrain_transfer.md).
QUICK = {"sessions": 2, "pool": 2, "trials": 100, "units": 40, "epochs": 2, "pretrain_epochs": 2, "finetune_epochs": 2,
         "layers": 1, "hidden": 32, "lr": 3.0e-3, "seeds": [0], "pretrain_seeds": [0], "jobs": 2,
         "reference_sessions": 1, "reference_seeds": [0]}
FULL = {"sessions": 4, "pool": 8, "trials": 300, "units": 150, "epochs": 100, "pretrain_epochs": 80, "finetune_epochs": 100,
        "layers": 2, "hidden": 64, "lr": 3.0e-3, "seeds": [0, 1, 2], "pretrain_seeds": [0], "jobs": 2,
        "reference_sessions": 2, "reference_seeds": [0, 1]}


def _neds_run(workdir: Path, name: str, recipe: dict, threads: int = 2) -> Path:
    """Run ``recipe`` (a dict over the quickstart recipe; its run is named ``name``) with neds-run."""
    path = workdir / f"{name}.yaml"
    body = {"extends": str(ROOT / "recipes" / "quickstart.yaml"), **recipe}
    body["run"] = {"name": name, **recipe.get("run", {})}
    text = yaml.safe_dump(body, sort_keys=False)
    sets = ["train.progress=false", f"train.threads={threads}", f"finetune.threads={threads}", f"eval.threads={threads}", f"fit.threads={threads}"]
    # A kept work folder (--workdir) holds `<name>.done` beside each finished run: the same recipe
    # again reuses the run instead of repeating it, so an interrupted suite goes on where it stopped.
    done_marker, key = workdir / f"{name}.done", text + "\n".join(sets) + "\n" + code_version()
    run_dir = workdir / "runs" / name
    if done_marker.exists() and done_marker.read_text() == key and run_dir.is_dir():
        return run_dir
    done_marker.unlink(missing_ok=True)
    if run_dir.is_dir() and any(stage in recipe.get("stages", []) for stage in ("train", "finetune", "fit")):
        shutil.rmtree(run_dir)  # an unfinished earlier attempt: start that run again from nothing
    path.write_text(text)
    cmd = [NEDS_RUN, str(path)] + [a for s in sets for a in ("--set", s)]
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    atomic_write_text(done_marker, key)
    return run_dir


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """What a finished run's reuse also depends on besides its recipe: a hash of the code and the
    recipes it runs (the framework, the plugins, the recipes, the benchmarks), so a kept work folder
    never hands back a run made by other code."""
    digest = hashlib.sha256()
    for folder, pattern in (("neds_framework", "*.py"), ("plugins", "*.py"), ("recipes", "*.yaml"), ("benchmarks", "*.py")):
        for path in sorted((ROOT / folder).rglob(pattern)):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"code {digest.hexdigest()}"


def _rows(run_dir: Path) -> list[tuple]:
    from neds_framework.engine.record import read_table
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


def learning_curve(run_dir: Path) -> list[dict]:
    """[{step, bps, wheel_r2}] from a run's validations (train.val_metrics)."""
    from neds_framework.engine.record import RunRecord

    epochs = RunRecord.load(run_dir).history.get("epoch", {})
    steps, bps, wheel = (epochs.get(k, []) for k in ("step", "val_encoding_spikes_bps", "val_decoding_wheel_r2"))
    return [{"step": int(s), "bps": float(b), "wheel_r2": float(w)} for s, b, w in zip(steps, bps, wheel)]


def matched_pairs(values: dict, better: str, worse: str) -> dict:
    """Per column: how many (session, seed) pairs `better` beats `worse` in (ties count as wins), of how many."""
    out = {}
    for column in ("/".join(c) for c in COLUMNS):
        a, b = values.get(better, {}).get(column, []), values.get(worse, {}).get(column, [])
        pairs = [(x, y) for x, y in zip(a, b) if math.isfinite(x) and math.isfinite(y)]
        if pairs:
            out[column] = {"wins": sum(x >= y for x, y in pairs), "pairs": len(pairs)}
    return out


def _data(p: dict, store: str, cache: str, eids: list[str] | None = None) -> dict:
    """A recipe's data section: the generated sessions (cache "gen") or the pretraining pool ("pool")."""
    n, seed, lab = (p["sessions"], 0, "synthlab") if cache == "gen" else (p["pool"], 1, "poollab")
    synth = {"sessions": n, "seed": seed, "trials": p["trials"], "units": p["units"], "lab": lab}
    source = {"one": {"cache_dir": cache}, "synthesize": synth, **({"eids": list(eids)} if eids else {})}
    return {"store": store, "source": source}


def prepare_sessions(workdir: Path, p: dict, pool: bool = True) -> list[str]:
    """Generate and prepare the evaluated sessions (store.h5, and store_<i>.h5 with session i alone) and the pool."""
    from neds_framework.data.store import SessionStore

    _neds_run(workdir, "prepare", {"stages": ["prepare"], "data": _data(p, "store.h5", "gen")})
    if pool:
        _neds_run(workdir, "prepare_pool", {"stages": ["prepare"], "data": _data(p, "pool.h5", "pool")})
    eids = SessionStore(workdir / "store.h5").eids
    for i, eid in enumerate(eids):  # one store per session, shared by every arm trained on it alone
        _neds_run(workdir, f"prepare_{i}", {"stages": ["prepare"], "data": _data(p, f"store_{i}.h5", "gen", [eid])})
    return eids


def single_session_recipe(p: dict, seed: int, i: int, eid: str, **overrides) -> dict:
    """`neds single` on session i with seed: the default recipe's settings at the suite's size."""
    model = {"layers": p["layers"], "hidden": p["hidden"], "heads": 4, "ffn": 2 * p["hidden"], **overrides.pop("model", {})}
    recipe = {
        "stages": ["train", "eval"], "run": {"seed": seed}, "data": _data(p, f"store_{i}.h5", "gen", [eid]),
        "model": model, "train": {"epochs": p["epochs"], "optimizer": {"lr": p["lr"]}, "val_metrics": True},
        "eval": {"figures": False},
    }
    for section, settings in overrides.items():
        recipe[section] = {**recipe.get(section, {}), **settings}
    return recipe


def run_quality(workdir: Path, quick: bool, reference: Path | None = None, reference_commit: str | None = None) -> dict:
    """{arm: {column: [per-(session, seed) values]}}, the oracles', curves, pairs, the region probe and per-neuron pairs."""
    p = QUICK if quick else FULL
    model = {"layers": p["layers"], "hidden": p["hidden"], "heads": 4, "ffn": 2 * p["hidden"]}
    threads = max(1, 2 // p["jobs"])

    from neds_framework.data.store import SessionStore

    data = lambda store, cache, eids=None: _data(p, store, cache, eids)  # noqa: E731
    eids = prepare_sessions(workdir, p)

    optimizer = {"lr": p["lr"]}
    pretrain, single, finetune = {}, {}, {}
    pretrain_seeds = p.get("pretrain_seeds", p["seeds"])
    for seed in pretrain_seeds:
        pretrain[seed] = (f"pre_s{seed}", {
            "stages": ["train"], "run": {"seed": seed}, "data": data("pool.h5", "pool"), "model": model,
            "modalities": {"spikes": {"head": {"name": "spikes", "start_rows": "zero"}}},
            "train": {"epochs": p["pretrain_epochs"], "optimizer": optimizer},
        })
    pretrained_for = {seed: seed if seed in pretrain else pretrain_seeds[0] for seed in p["seeds"]}
    for seed in p["seeds"]:
        for i, eid in enumerate(eids):
            single[("neds single", seed, i)] = (f"single_s{seed}_{i}", single_session_recipe(p, seed, i, eid))
            finetune[("neds multi", seed, i)] = (f"multi_s{seed}_{i}", {  # the pool's model, finetuned on this session
                "stages": ["finetune", "eval"], "run": {"seed": seed}, "data": data(f"store_{i}.h5", "gen", [eid]),
                "model": model,
                "finetune": {"pretrained": f"runs/pre_s{pretrained_for[seed]}", "epochs": p["finetune_epochs"],
                             "optimizer": optimizer, "progress": False},
                "eval": {"figures": False},
            })
    baselines = {name: (name, {"stages": ["fit"], "data": data("store.h5", "gen"), "model": {"name": name},
                               "fit": {"figures": False}})
                 for name in ("ridge_decoder", "rrr_encoder", "glm_encoder")}
    # The reference: the same sessions' stores, the same number of optimiser steps as `neds single`.
    references = {}
    if reference is not None:
        with SessionStore(workdir / "store.h5") as store:
            steps = {i: p["epochs"] * -(-len(store.split(eid, "train")) // 16) for i, eid in enumerate(eids)}
        for seed in p["reference_seeds"]:
            for i, eid in enumerate(eids[: p["reference_sessions"]]):
                references[("reference", seed, i)] = (eid, i, steps[i], seed)

    def run_ref(eid, i, steps, seed):
        from .reference import reference_commit as checkout_commit, run_reference

        settings = dict(seed=seed, layers=p["layers"], hidden=p["hidden"], heads=4, ffn=2 * p["hidden"], lr=p["lr"],
                        eval_every=max(1, steps // 10), threads=threads, reference_commit=reference_commit)
        out, done_marker = workdir / f"reference_s{seed}_{i}.json", workdir / f"reference_s{seed}_{i}.done"
        key = json.dumps({"reference": str(reference), "commit": checkout_commit(reference, reference_commit), "eid": eid,
                          "steps": steps, **settings, "code": code_version()}, sort_keys=True)
        if out.exists() and done_marker.exists() and done_marker.read_text() == key:
            return json.loads(out.read_text())  # finished in an earlier attempt in this --workdir
        result = run_reference(reference, workdir / f"store_{i}.h5", eid, steps, out=out, **settings)
        atomic_write_text(done_marker, key)
        return result

    # Independent runs go `jobs` at a time (one thread each: small models use 2 cores better as 2
    # processes); the longest first (the reference, then pretraining), so the pool does not end on
    # one long run, and each finetune as soon as its pretraining is done.
    with ThreadPoolExecutor(max_workers=p["jobs"]) as pool:
        run = lambda job: pool.submit(_neds_run, workdir, *job, threads)  # noqa: E731
        ref_done = {key: pool.submit(run_ref, *job) for key, job in references.items()}
        pre_done = {seed: run(job) for seed, job in pretrain.items()}
        single_done = {key: run(job) for key, job in single.items()}
        base_done = {key: run(job) for key, job in baselines.items()}
        ft_done = {}
        for (arm, seed, i), job in finetune.items():
            pre_done[pretrained_for[seed]].result()
            ft_done[(arm, seed, i)] = run(job)
        results = {**{k: f.result() for k, f in single_done.items()}, **{k: f.result() for k, f in ft_done.items()}}
        base_results = {k: f.result() for k, f in base_done.items()}
        ref_results = {k: f.result() for k, f in ref_done.items()}

    values: dict[str, dict] = {}
    oracles = {("oracle", "spikes", "bps"): "oracle", ("oracle_behaviour", "spikes", "bps"): "oracle behaviour"}
    for arm, run_dir in base_results.items():
        for _, task, modality, metric, value in _rows(run_dir):
            if (task, modality, metric) in COLUMNS:
                values.setdefault(arm, {}).setdefault("/".join((task, modality, metric)), []).append(value)
            if (task, modality, metric) in oracles and arm == "rrr_encoder":  # once per session
                values.setdefault(oracles[(task, modality, metric)], {}).setdefault("encoding/spikes/bps", []).append(value)
    per_neuron, curves = {}, {"neds single": [], "reference": []}
    for (arm, seed, i), run_dir in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        for _, task, modality, metric, value in _rows(run_dir):
            if (task, modality, metric) in COLUMNS:
                values.setdefault(arm, {}).setdefault("/".join((task, modality, metric)), []).append(value)
        if seed == p["seeds"][0]:
            model_bps, oracle_bps = per_neuron_bps(run_dir)
            per_neuron.setdefault(arm, {"model": [], "oracle": []})
            per_neuron[arm]["model"] += model_bps
            per_neuron[arm]["oracle"] += oracle_bps
        if arm == "neds single" and seed in p["reference_seeds"] and i < p["reference_sessions"]:
            curves["neds single"].append({"session": i, "seed": seed, "points": learning_curve(run_dir)})
    for (arm, seed, i), got in sorted(ref_results.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        for column in ("/".join(c) for c in COLUMNS):
            values.setdefault(arm, {}).setdefault(column, []).append(float(got["test"].get(column, math.nan)))
        # The comparison on identical data: neds single's scores on this very (session, seed), in the same order.
        for _, task, modality, metric, value in _rows(results[("neds single", seed, i)]):
            if (task, modality, metric) in COLUMNS:
                values.setdefault(MATCHED, {}).setdefault("/".join((task, modality, metric)), []).append(value)
        curves["reference"].append({"session": i, "seed": seed, "points": got.get("curve", []),
                                    "commit": got.get("reference_commit")})
    glm_model, glm_oracle = per_neuron_bps(base_results["glm_encoder"])
    per_neuron["glm_encoder"] = {"model": glm_model, "oracle": glm_oracle}
    from .region_probe import region_probe  # the emergent region code, read from each pretrained model's readout

    values["region probe"] = {"runs": [region_probe(workdir / "runs" / f"pre_s{seed}", workdir / "pool.h5")
                                       for seed in pretrain_seeds]}
    values["per neuron"] = per_neuron
    values["curves"] = curves if ref_results else {"neds single": curves["neds single"]}
    values["pairs"] = {"neds multi vs neds single": matched_pairs(values, "neds multi", "neds single")}
    values["reference checkout"] = {"path": str(reference) if reference else None}
    return values


def mean_sem(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    sem = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else float("nan")
    return statistics.fmean(finite), sem, len(finite)


def table(values: dict) -> tuple[list[str], list[list[str]], dict]:
    header = ["model", *("/".join(c) for c in COLUMNS)]
    values = {k: v for k, v in values.items() if k in ORDER}
    rows, numbers = [], {}
    for arm in [a for a in ORDER if a in values]:
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


def targets(numbers: dict, values: dict) -> list[tuple[str, bool | None, str]]:
    """Issue #13's bar, checked on this run: (what, met (None: not measured), the numbers)."""
    def mean(arm, column):
        m, _, n = numbers.get((arm, column), (math.nan, math.nan, 0))
        return m if n else math.nan

    out = []
    single = "neds single"
    checks = [("encoding/spikes/bps", "glm_encoder"), ("decoding/wheel/r2", "ridge_decoder"),
              ("decoding/whisker/r2", "ridge_decoder"), ("decoding/choice/balanced_accuracy", "ridge_decoder"),
              ("decoding/block/balanced_accuracy", "ridge_decoder")]
    for column, baseline in checks:
        a, b = mean(single, column), mean(baseline, column)
        ok = None if not (math.isfinite(a) and math.isfinite(b)) else a >= b
        out.append((f"neds single >= {baseline} on {column}", ok, f"{a:.3f} vs {b:.3f}"))
    if any(arm == "reference" and n for (arm, _), (_, _, n) in numbers.items()):
        # On identical data: neds single on the reference's own (session, seed) pairs.
        worse = [c for c in ("/".join(c) for c in COLUMNS)
                 if math.isfinite(mean("reference", c)) and math.isfinite(mean(MATCHED, c)) and mean(MATCHED, c) < mean("reference", c)]
        scores = ", ".join(f"{c.split('/', 1)[1]} {mean(MATCHED, c):.3f} vs {mean('reference', c):.3f}" for c in ("/".join(c) for c in COLUMNS))
        out.append(("neds single >= reference on every metric (the reference's pairs)", not worse,
                    ("behind on " + ", ".join(worse) + "; " if worse else "") + scores))
    else:
        out.append(("neds single >= reference on every metric", None, "no reference checkout given (--reference PATH)"))
    pairs = values.get("pairs", {}).get("neds multi vs neds single", {})
    if pairs:
        share = {c: v["wins"] / v["pairs"] for c, v in pairs.items()}
        low = [c for c, v in share.items() if v < 0.75]
        out.append(("neds multi beats neds single in >= 75 % of matched pairs, every metric", not low,
                    ", ".join(f"{c.split('/', 1)[1]} {pairs[c]['wins']}/{pairs[c]['pairs']}" for c in pairs)))
    probe = values.get("region probe", {}).get("runs", [])
    finite = [r for r in probe if math.isfinite(r.get("accuracy", math.nan))]
    if finite:
        ratio = statistics.fmean(r["accuracy"] / r["chance"] for r in finite)
        out.append(("region probe >= 2 x chance", ratio >= 2, f"{ratio:.2f} x chance"))
    saturated = [c for c in ("/".join(c) for c in COLUMNS) if "accuracy" in c and all(
        mean(a, c) >= 0.9995 for a in ORDER if math.isfinite(mean(a, c))) and any(math.isfinite(mean(a, c)) for a in ORDER)]
    out.append(("no accuracy column is 1.000 for every model", not saturated, ", ".join(saturated) or "none saturated"))
    return out
