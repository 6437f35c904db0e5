"""Training-step and evaluation speed of NEDS against the reference's own code, side by side, on CPU.

The reference's single-session size: a batch of 16 trials of one session with 300 neurons,
spikes + wheel + whisker + choice + block, 100 bins; 5 layers, hidden 256, 8 heads, FFN 512;
2 threads. Every row runs in its own fresh process (so its peak RSS is its own, and the
reference's top-level packages never meet ours), and the rows are run in alternating rounds so a
noisy neighbour slows both sides alike; each row reports its rounds' range.

What is the reference (given with --reference, a checkout of github yzhang511/NEDS; never vendored):
its config (`mm_single_session.yaml` in `trainer_mm.yaml`, as its train.py builds it, attention
dropout 0.4 included), its model (`multi_modal.mm.MultiModal` with its stitching embedders), its
trainer (`trainer.base.MultiModalTrainer`) with mixed multi-task masking; a training row times its
`train_epoch` over a loader of `steps` batches (zero_grad, its `_forward_model_inputs`, backward,
AdamW, OneCycleLR, its loss bookkeeping), an evaluation row its encoding and decoding forwards
(`_forward_model_inputs(batch, "encoding", "all")` and `(batch, "decoding")`) under no_grad in
eval mode. The glue (building it on one generated session) is benchmarks/reference.py's.

What is ours: the step the train stage takes (multi-task masks, forward under the recipe's
autocast, loss, backward, AdamW) and the evaluation the eval stage runs (encoding and decoding
masks, forward, `predict`), at the defaults and one lever at a time.

Model FLOPs per trial are torch's FlopCounterMode count of one step (matmuls and attention,
forward and backward) of each side's own code; utilisation is achieved FLOP/s over this machine's
best measured fp32 and bf16 matmul rates on the same threads.

    python -m benchmarks.bench_train_step --reference /path/to/NEDS   # full: about 15 minutes on 2 cores
    python -m benchmarks.bench_train_step --quick                     # CI: our rows only, a few steps

Writes benchmarks/results/train_step.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ._results import machine, write_results

FIVE = ("spikes", "wheel", "whisker", "choice", "block")
ROOT = Path(__file__).resolve().parents[1]

aten = torch.ops.aten
# FlopCounterMode does not know PyTorch's CPU flash-attention kernels; count them like the others.
CPU_ATTENTION_FLOPS = {
    aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, out_shape=None, **kw: sdpa_flop_count(q, k, v),
    aten._scaled_dot_product_flash_attention_for_cpu_backward: (
        lambda g, q, k, v, *a, out_shape=None, **kw: sdpa_backward_flop_count(g, q, k, v)
    ),
}

# (row id, what it shows, settings). Ours: layout None / attention_dropout None / amp "auto" are
# the library's defaults. The levers are switched one at a time against the fp32 defaults.
TRAIN_ROWS = [
    ("ours: defaults", "the defaults (train.amp auto)", {"who": "ours", "layout": None, "attention_dropout": None, "amp": "auto"}),
    ("ours: the reference's configuration", "expanded static tokens, attention dropout 0.4, train.amp auto",
     {"who": "ours", "layout": "expanded", "attention_dropout": 0.4, "amp": "auto"}),
    ("ours: fp32", "lever off: the defaults with train.amp off",
     {"who": "ours", "layout": None, "attention_dropout": None, "amp": "off"}),
    ("ours: fp32, attention dropout 0.4", "lever off: the reference's configuration with train.amp off",
     {"who": "ours", "layout": "expanded", "attention_dropout": 0.4, "amp": "off"}),
    ("ours: compact static tokens", "the defaults with one token per static modality (a quality cost: model_choices.md)",
     {"who": "ours", "layout": "compact", "attention_dropout": None, "amp": "auto"}),
    ("reference", "its code and config (attention dropout 0.4), its train_epoch", {"who": "reference"}),
]
EVAL_ROWS = [
    ("ours eval: defaults", "eval.amp auto, eval.batch_size 64", {"who": "ours", "amp": "auto", "batch": 64}),
    ("ours eval: batch 16", "eval.amp auto", {"who": "ours", "amp": "auto", "batch": 16}),
    ("ours eval: fp32, batch 16", "lever off: eval.amp off", {"who": "ours", "amp": "off", "batch": 16}),
    ("reference eval", "its encoding + decoding forwards, batch 16", {"who": "reference", "batch": 16}),
]


# --------------------------------------------------------------------------- our model


def make_model(layout: str | None, attention_dropout: float | None, neurons: int, bins: int, seed: int = 0, **size):
    """The benchmark's five-modality NEDS; None keeps a default; `size` overrides layers, hidden, ..."""
    from neds_framework.model.neds import Neds
    from neds_modalities.parts import builtin_parts
    from neds_modalities.tokenizers import StaticTokenizer

    torch.manual_seed(seed)
    if attention_dropout is not None:
        size["attention_dropout"] = attention_dropout
    settings = Neds.Settings(**size)
    layout = layout or StaticTokenizer.Settings().layout
    return Neds(settings, builtin_parts(FIVE, settings.hidden, bins, layout=layout))


def make_values(batch: int, neurons: int, bins: int, seed: int = 0) -> dict[str, np.ndarray]:
    """One generated batch: Poisson counts at 0-20 Hz, behaviour in [0, 1], two- and three-way classes."""
    g = np.random.default_rng(seed)
    rates = g.random((1, bins, neurons)) * 0.4  # counts per 20 ms bin
    return {
        "spikes": g.poisson(np.broadcast_to(rates, (batch, bins, neurons))).astype(np.float32),
        "wheel": g.random((batch, bins)).astype(np.float32),
        "whisker": g.random((batch, bins)).astype(np.float32),
        "choice": g.integers(0, 2, batch),
        "block": g.integers(0, 3, batch),
    }


def make_batch(batch: int, neurons: int, bins: int, seed: int = 0):
    from neds_framework.model.batch import Batch
    from neds_modalities.plugin import MODALITIES as SPECS

    values = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in make_values(batch, neurons, bins, seed).items()}
    return Batch(session="bench", values=values, specs=SPECS)


def train_step(model, optimiser, masker, batch, generator, autocast=None) -> None:
    masks = masker(batch, generator)
    if autocast is None:
        loss = model(batch, masks).loss
    else:
        with autocast():
            loss = model(batch, masks).loss
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def timed_steps(step, warmup: int, steps: int) -> list[float]:
    """Seconds of each of `steps` calls of `step()`, after `warmup` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def _ours(row: dict, args) -> dict:
    from neds_framework.engine.precision import autocast_factory, resolve_amp
    from neds_framework.model.batch import session_features
    from neds_framework.model.eval_masks import decoding_masks, encoding_masks
    from neds_masking.multitask import NedsMultitaskMasker

    cpu = torch.device("cpu")
    amp, why = resolve_amp(row["amp"], cpu)
    autocast = autocast_factory(amp, cpu)
    batch_size = row.get("batch", args.batch)
    model = make_model(row.get("layout"), row.get("attention_dropout"), args.neurons, args.bins)
    batch = make_batch(batch_size, args.neurons, args.bins)
    model.add_session(batch.session, session_features(batch.values))
    out = {"amp": amp, "amp_reason": why, "batch": batch_size,
           "tokens_per_trial": sum(t.n_tokens() for t in model.tokenizers.values()),
           "attention_dropout": model.settings.attention_dropout,
           "static_layout": row.get("layout") or "default",
           "parameters": sum(p.numel() for p in model.parameters())}
    if args.kind == "train":
        model.train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
        masker = NedsMultitaskMasker()
        generator = torch.Generator().manual_seed(0)
        step = lambda: train_step(model, optimiser, masker, batch, generator, autocast)  # noqa: E731
    else:
        model.eval()
        enc, dec = encoding_masks(batch), decoding_masks(batch)

        def step():
            with torch.no_grad(), autocast():
                for masks in (enc, dec):
                    model.predict(model(batch, masks))
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        step()
    times = timed_steps(step, args.warmup, args.steps)
    return {**out, "step_s_all": times, "flop_per_step": counter.get_total_flops()}


# --------------------------------------------------------------------------- the reference


def _reference(row: dict, args) -> dict:
    from . import reference as glue

    ref = glue.import_reference(Path(args.reference))
    eid = "bench"
    batch_size = row.get("batch", args.batch)
    n_batches = args.warmup + args.steps
    values = {k: v for k, v in make_values(batch_size * n_batches, args.neurons, args.bins).items()}
    items = glue.reference_items(eid, values)
    config = glue.reference_config(ref, args.bins, 5, 256, 8, 512)
    glue.register_session(ref, eid)
    modalities = list(glue.MODALITIES)
    model, meta = glue.build(ref, config, eid, args.neurons, modalities, 42, "cpu")
    optimizer, schedule, _ = glue.optimiser_and_schedule(config, model, 10 * n_batches, None)
    mods = [r for r, _ in modalities]

    def trainer_for(part: list[dict]):
        loader = glue.reference_loader(part, batch_size, 42, shuffle=False)
        return ref.trainer.MultiModalTrainer(
            model=model, train_dataloader=loader, eval_dataloader=None, optimizer=optimizer,
            log_dir=None, accelerator=glue.OneProcess("cpu"), lr_scheduler=schedule,
            avail_mod=mods, avail_beh=[m for m in mods if m != "spike"],
            modal_filter={"input": mods, "output": mods}, mixed_training=True, enc_task_var="all",
            config=config, multi_gpu=False, start_epoch=0, **meta,
        )

    first, rest = items[:batch_size], items[batch_size:]
    tr = config.model.encoder.transformer
    out = {"batch": batch_size, "attention_dropout": float(tr.dropout), "static_layout": "expanded (its)",
           "tokens_per_trial": args.bins * len(mods), "parameters": sum(p.numel() for p in model.parameters()),
           "amp": "off", "amp_reason": "its fp32"}
    if args.kind == "train":
        import contextlib
        import io

        def epoch(part, trainer):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                trainer.train_epoch(0)  # its loop; its tqdm and "Epoch ... LR" line silenced

        with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
            epoch(first, trainer_for(first))
        warm, timed = rest[: batch_size * (args.warmup - 1)], rest[batch_size * max(args.warmup - 1, 0):]
        if warm:
            epoch(warm, trainer_for(warm))
        trainer = trainer_for(timed)
        start = time.perf_counter()
        epoch(timed, trainer)
        n = len(timed) // batch_size
        per_step = (time.perf_counter() - start) / n
        return {**out, "step_s_all": [per_step] * n, "flop_per_step": counter.get_total_flops(),
                "timed_as": f"one train_epoch over {n} batches"}
    trainer = trainer_for(first)
    model.eval()
    batches = list(glue.reference_loader(items, batch_size, 42, shuffle=False))

    def step(batch):
        with torch.no_grad():
            trainer._forward_model_inputs(batch, "encoding", enc_task_var="all")
            trainer._forward_model_inputs(batch, "decoding")

    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        step(batches[0])
    it = iter(batches[1:] + batches[:1])
    times = timed_steps(lambda: step(next(it)), args.warmup - 1 if args.warmup else 0, args.steps)
    return {**out, "step_s_all": times, "flop_per_step": counter.get_total_flops()}


# --------------------------------------------------------------------------- one row, in its own process


def worker(spec: dict) -> dict:
    args = argparse.Namespace(**spec["args"])
    torch.set_num_threads(args.threads)
    row = spec["row"]
    result = (_reference if row["who"] == "reference" else _ours)(row, args)
    times = result.pop("step_s_all")
    step_s = sorted(times)[len(times) // 2]
    batch = result["batch"]
    return {**result, "step_s_median": step_s, "trials_per_s": batch / step_s,
            "gflop_per_trial": result.pop("flop_per_step") / batch / 1e9,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_row(kind: str, row: dict, args) -> dict:
    spec = {"row": row, "args": {"kind": kind, "threads": args.threads, "batch": args.batch, "neurons": args.neurons,
                                 "bins": args.bins, "steps": args.steps, "warmup": args.warmup,
                                 "reference": str(args.reference) if args.reference else None}}
    done = subprocess.run([sys.executable, "-m", "benchmarks.bench_train_step", "--worker", json.dumps(spec)],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"bench_train_step: the row {row} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def matmul_ceiling(quick: bool, dtype: torch.dtype = torch.float32) -> dict:
    """Best GEMM rate in `dtype`: a large square one and the model's own widest shape."""
    shapes = {"square_2048": (2048, 2048, 2048), "qkv_16x500_tokens": (16 * 500, 256, 768)}
    out = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        a @ b
        best = float("inf")
        for _ in range(3 if quick else 10):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
        out[name] = 2 * m * k * n / best / 1e9
    return out


# --------------------------------------------------------------------------- the report


def _summary(name: str, what: str, runs: list[dict], ceilings: dict) -> dict:
    rates = [r["trials_per_s"] for r in runs]
    first = runs[0]
    gflops = [r["gflop_per_trial"] * r["trials_per_s"] for r in runs]
    return {"row": name, "what": what, **{k: first[k] for k in ("amp", "amp_reason", "batch", "attention_dropout",
                                                                  "static_layout", "tokens_per_trial", "parameters",
                                                                  "gflop_per_trial")},
            "trials_per_s_rounds": rates, "trials_per_s": float(np.median(rates)),
            "trials_per_s_range": [min(rates), max(rates)],
            "achieved_gflop_per_s": float(np.median(gflops)),
            "utilisation_fp32": float(np.median(gflops)) / ceilings["fp32"],
            "utilisation_bf16": float(np.median(gflops)) / ceilings["bf16"],
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "peak_rss_mb_rounds": [r["peak_rss_mb"] for r in runs]}


def _ratio(ours: dict, ref: dict | None) -> str:
    if ref is None:
        return "-"
    low = ours["trials_per_s_range"][0] / ref["trials_per_s_range"][1]
    high = ours["trials_per_s_range"][1] / ref["trials_per_s_range"][0]
    return f"{ours['trials_per_s'] / ref['trials_per_s']:.1f}x ({low:.1f}-{high:.1f})"


def markdown(report: dict) -> str:
    c = report["ceiling_gflop_per_s"]
    lines = [
        "# Training and evaluation speed against the reference (CPU)",
        "",
        f"{report['machine']['cpu']}, {report['threads']} threads, torch {report['machine']['torch']}. Batch "
        f"{report['batch']} (evaluation: as given), {report['neurons']} neurons, {report['bins']} bins; 5 layers, hidden 256, "
        "8 heads, FFN 512; spikes + wheel + whisker + choice + block. Each row in its own process, "
        f"{report['rounds']} alternating rounds of {report['steps']} steps after {report['warmup']} warm-up; trials/s is the "
        "median over rounds (range in brackets); ratios are against the reference's row of the same kind (range: "
        "worst against best round). Peak RSS is each row's own process. "
        f"Matmul ceiling here: fp32 {c['fp32']:.0f}, bf16 {c['bf16']:.0f} GFLOP/s.",
        "",
    ]
    if report.get("reference_path"):
        lines += [f"The reference: its own code from `{report['reference_path']}` (commit {report.get('reference_commit') or '?'}).", ""]
    else:
        lines += ["**No reference checkout was given: our rows only** (`--reference PATH` runs the reference's code beside them).", ""]
    for kind, title in (("train", "Training step"), ("eval", "Evaluation (encoding + decoding forwards)")):
        rows = report[kind]
        ref = next((r for r in rows if r["row"].startswith("reference")), None)
        lines += [f"## {title}", "",
                  "| row | what | precision | tokens/trial | trials/s | vs reference | GFLOP/trial | GFLOP/s "
                  "| of fp32 ceiling | of bf16 ceiling | peak RSS (MiB) |",
                  "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|"]
        for r in rows:
            span = f"{r['trials_per_s']:.1f} ({r['trials_per_s_range'][0]:.1f}-{r['trials_per_s_range'][1]:.1f})"
            lines.append(f"| {r['row']} | {r['what']} | {r['amp']} | {r['tokens_per_trial']} | {span} | "
                         f"{_ratio(r, ref) if r is not ref else '1'} | {r['gflop_per_trial']:.2f} | "
                         f"{r['achieved_gflop_per_s']:.0f} | {r['utilisation_fp32']:.0%} | {r['utilisation_bf16']:.0%} | "
                         f"{r['peak_rss_mb']:.0f} |")
        lines.append("")
    why = {r["amp_reason"] for r in report["train"] if r["row"] == "ours: defaults"}
    lines += [f"Precision at the defaults: {', '.join(sorted(why))}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=None, help="a checkout of github yzhang511/NEDS (its rows run beside ours)")
    parser.add_argument("--reference-commit", default=None)
    parser.add_argument("--quick", action="store_true", help="few steps, one round (CI)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--neurons", type=int, default=300)
    parser.add_argument("--bins", type=int, default=100)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    args.steps = args.steps or (2 if args.quick else 8)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.reference is not None:
        from . import reference as glue

        try:  # its checkout and the packages its code imports, before any of our rows
            glue.preflight(args.reference)
        except glue.NedsError as exc:
            raise SystemExit(f"error: {exc}") from None
    torch.set_num_threads(args.threads)
    ceilings = {"fp32": max(matmul_ceiling(args.quick).values()),
                "bf16": max(matmul_ceiling(args.quick, torch.bfloat16).values())}
    plan = [(kind, name, what, row) for kind, rows in (("train", TRAIN_ROWS), ("eval", EVAL_ROWS))
            for name, what, row in rows if row["who"] == "ours" or args.reference is not None]
    runs: dict[tuple, list] = {}
    for round_ in range(args.rounds):
        for kind, name, what, row in plan:
            r = run_row(kind, row, args)
            runs.setdefault((kind, name, what), []).append(r)
            print(f"round {round_ + 1}  {kind:5s} {name:40s} {r['trials_per_s']:7.1f} trials/s  {r['amp']:4s}  "
                  f"{r['gflop_per_trial']:.2f} GFLOP/trial  RSS {r['peak_rss_mb']:.0f} MiB", flush=True)
    report = {"benchmark": "train_step", "quick": args.quick, "machine": machine(), "threads": args.threads,
              "batch": args.batch, "neurons": args.neurons, "bins": args.bins, "steps": args.steps,
              "warmup": args.warmup, "rounds": args.rounds, "ceiling_gflop_per_s": ceilings,
              "reference_path": str(args.reference) if args.reference else None}
    if args.reference is not None:
        from . import reference as glue

        report["reference_commit"] = glue.reference_commit(args.reference.resolve(), args.reference_commit)
    for kind in ("train", "eval"):
        report[kind] = [_summary(name, what, got, ceilings) for (k, name, what), got in runs.items() if k == kind]
    print(f"wrote {write_results('train_step', report, markdown(report), args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
