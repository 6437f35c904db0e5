"""Quality on generated sessions with ground truth: NEDS, the baselines and the oracle, side by side.

Every arm is a real `neds-run` on the same generated sessions and splits, scored by the same
evaluation (encoding: all spikes hidden; decoding: all behaviour hidden):

    neds (expanded)    single-session NEDS, the reference's static-token layout (one run per session)
    neds (compact)     the same with one token per trial variable
    neds (multi)       pretrained on the other generated sessions, finetuned on each one
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
from pathlib import Path

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
QUICK = {"sessions": 2, "trials": 100, "units": 40, "epochs": 2, "layers": 1, "hidden": 32, "seeds": [0]}
FULL = {"sessions": 6, "trials": 300, "units": 150, "epochs": 60, "layers": 2, "hidden": 64, "seeds": [0, 1, 2]}


def _neds_run(workdir: Path, name: str, body: str) -> Path:
    path = workdir / f"{name}.yaml"
    path.write_text(f"extends: {ROOT / 'recipes' / 'quickstart.yaml'}\n" + textwrap.dedent(body))
    done = subprocess.run([NEDS_RUN, str(path), "--set", "train.progress=false"], cwd=workdir, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed:\n{done.stderr[-3000:]}")
    return workdir / "runs" / name


def _rows(run_dir: Path) -> list[tuple]:
    from neds_framework.engine.eval_stage import read_table
    from neds_framework.engine.record import RunRecord

    return read_table(RunRecord.load(run_dir))


def run_quality(workdir: Path, quick: bool) -> dict:
    """{arm: {column: [per-(session, seed) values]}} and the oracle's, from real runs."""
    p = QUICK if quick else FULL
    synth = f"{{sessions: {p['sessions']}, seed: 0, trials: {p['trials']}, units: {p['units']}}}"
    model = f"{{layers: {p['layers']}, hidden: {p['hidden']}, heads: 4, ffn: {2 * p['hidden']}}}"

    def data(store: str, eids: list[str] | None = None) -> str:
        chosen = f", eids: [{', '.join(eids)}]" if eids else ""
        return f"data: {{store: {store}, source: {{one: {{cache_dir: gen}}, synthesize: {synth}{chosen}}}}}"

    _neds_run(workdir, "prepare", f"stages: [prepare]\nrun: {{name: prepare}}\n{data('store.h5')}\n")
    from neds_framework.data.store import SessionStore

    eids = SessionStore(workdir / "store.h5").eids
    values: dict[str, dict[str, list[float]]] = {}

    def collect(arm: str, rows):
        for _, task, modality, metric, value in rows:
            key = (task, modality, metric)
            if key == ("oracle", "spikes", "bps") and arm == "ridge_decoder":  # once per session
                values.setdefault("oracle", {}).setdefault("encoding/spikes/bps", []).append(value)
            if key in COLUMNS:
                values.setdefault(arm, {}).setdefault("/".join(key), []).append(value)

    for i, eid in enumerate(eids):  # one store per session, shared by every arm trained on it alone
        _neds_run(workdir, f"prepare_{i}", f"stages: [prepare]\nrun: {{name: prepare_{i}}}\n{data(f'store_{i}.h5', [eid])}\n")
    for seed in p["seeds"]:
        for layout in ("expanded", "compact"):
            static = lambda n: f"{{tokenizer: {{name: static, layout: {layout}}}, head: {{name: classification, n_classes: {n}}}}}"  # noqa: E731
            for i, eid in enumerate(eids):  # single-session models
                name = f"neds_{layout}_s{seed}_{i}"
                run = _neds_run(workdir, name, f"""
                    stages: [train, eval]
                    run: {{name: {name}, seed: {seed}}}
                    {data(f'store_{i}.h5', [eid])}
                    model: {model}
                    modalities: {{choice: {static(2)}, block: {static(3)}}}
                    train: {{epochs: {p['epochs']}}}
                    eval: {{figures: false}}
                    """)
                collect(f"neds ({layout})", _rows(run))
        for i, eid in enumerate(eids):  # pretrain on the other sessions, finetune on this one
            pre, ft = f"pre_s{seed}_{i}", f"multi_s{seed}_{i}"
            _neds_run(workdir, pre, f"""
                stages: [prepare, train]
                run: {{name: {pre}, seed: {seed}}}
                {data(f'store_pre_{i}.h5', [e for e in eids if e != eid])}
                model: {model}
                train: {{epochs: {p['epochs']}}}
                """)
            run = _neds_run(workdir, ft, f"""
                stages: [finetune, eval]
                run: {{name: {ft}, seed: {seed}}}
                {data(f'store_{i}.h5', [eid])}
                model: {model}
                finetune: {{pretrained: runs/{pre}, epochs: {p['epochs']}, optimizer: {{lr: 3.0e-3}}, progress: false}}
                eval: {{figures: false}}
                """)
            collect("neds (multi)", _rows(run))
            if i == 0:  # the emergent region code, read from a multi-session model's readout weights
                from region_probe import region_probe

                values.setdefault("region probe", {}).setdefault("runs", []).append(
                    region_probe(workdir / "runs" / pre, workdir / f"store_pre_{i}.h5"))
    for baseline in ("ridge_decoder", "rrr_encoder", "glm_encoder"):
        run = _neds_run(workdir, baseline, f"""
            stages: [fit]
            run: {{name: {baseline}}}
            {data('store.h5')}
            model: {{name: {baseline}}}
            fit: {{figures: false}}
            """)
        collect(baseline, _rows(run))
    return values


def mean_sem(values: list[float]) -> tuple[float, float, int]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    sem = statistics.stdev(finite) / math.sqrt(len(finite)) if len(finite) > 1 else float("nan")
    return statistics.fmean(finite), sem, len(finite)


def table(values: dict) -> tuple[list[str], list[list[str]], dict]:
    header = ["model", *("/".join(c) for c in COLUMNS)]
    values = {k: v for k, v in values.items() if k != "region probe"}
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
