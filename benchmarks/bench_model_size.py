"""Throughput vs model size: training and evaluation trials/s from the quickstart's size to the reference's large one.

For each size (the quickstart's 2 layers × hidden 64, and the reference's single, medium and large
sizes: 5, 16 and 22 layers at hidden 256, 8 heads, FFN 512), on the training-step benchmark's batch
(16 trials, 300 neurons, 100 bins, five modalities, expanded static tokens, attention dropout 0):

    train  one step: NEDS multi-task masks, forward, loss, backward, AdamW (median of `steps`)
    eval   one forward under torch.inference_mode() on the same batch and masks

plus the FLOPs per trial (FlopCounterMode), utilisation against the matmul ceiling of the precision used, the
parameter count, and the process's peak RSS after the size ran (sizes run smallest first, so it
is that size's peak).

    python -m benchmarks.bench_model_size            # about 5 minutes on 2 cores
    python -m benchmarks.bench_model_size --quick    # CI smoke run

Writes benchmarks/results/model_size.{json,md} (the quick run writes *_quick.*).
"""

from __future__ import annotations

import argparse
import resource

import torch
from torch.utils.flop_counter import FlopCounterMode

from ._results import machine, write_results
from .bench_train_step import (
    CPU_ATTENTION_FLOPS, make_batch, make_model, matmul_ceiling, timed_steps, train_step)

from neds_framework.engine.precision import autocast_factory, resolve_amp
from neds_framework.model.batch import session_features
from neds_masking.multitask import NedsMultitaskMasker

SIZES = {  # name: NEDS size settings
    "quickstart": {"layers": 2, "hidden": 64, "heads": 4, "ffn": 128},
    "single (reference)": {"layers": 5, "hidden": 256, "heads": 8, "ffn": 512},
    "medium (reference)": {"layers": 16, "hidden": 256, "heads": 8, "ffn": 512},
    "large (reference)": {"layers": 22, "hidden": 256, "heads": 8, "ffn": 512},
}


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def measure(size: dict, args) -> dict:
    model = make_model("expanded", 0.0, args.neurons, args.bins, **size)
    batch = make_batch(args.batch, args.neurons, args.bins)
    model.add_session(batch.session, session_features(batch.values))
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)
    masker = NedsMultitaskMasker()
    generator = torch.Generator().manual_seed(0)
    autocast = autocast_factory(args.amp_mode, torch.device("cpu"))  # train.amp / eval.amp auto, as the stages
    model.train()
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        train_step(model, optimiser, masker, batch, generator, autocast)
    train_times = timed_steps(lambda: train_step(model, optimiser, masker, batch, generator, autocast),
                              args.warmup, args.steps)
    model.eval()
    masks = masker(batch, generator)
    with torch.inference_mode(), autocast():
        eval_times = timed_steps(lambda: model(batch, masks), args.warmup, args.steps)
    gflop_per_trial = counter.get_total_flops() / args.batch / 1e9
    train_s = median(train_times)
    return {
        **size,
        "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "train_step_s": train_s,
        "train_trials_per_s": args.batch / train_s,
        "eval_trials_per_s": args.batch / median(eval_times),
        "gflop_per_trial": gflop_per_trial,
        "achieved_gflop_per_s": gflop_per_trial * args.batch / train_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small sizes, few steps (CI)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--neurons", type=int, default=300)
    parser.add_argument("--bins", type=int, default=100)
    args = parser.parse_args(argv)
    args.steps, args.warmup = (2, 1) if args.quick else (5, 2)
    torch.set_num_threads(args.threads)
    args.amp_mode, args.amp_reason = resolve_amp("auto", torch.device("cpu"))
    sizes = dict(list(SIZES.items())[:2]) if args.quick else SIZES
    dtype = torch.bfloat16 if args.amp_mode == "bf16" else torch.float32
    ceiling = max(matmul_ceiling(args.quick, dtype).values())  # the ceiling of the precision the matmuls run in
    rows = []
    for name, size in sizes.items():
        row = {"size": name, **measure(size, args)}
        row["utilisation"] = row["achieved_gflop_per_s"] / ceiling
        rows.append(row)
        print(f"{name:20s} {row['parameters_m']:6.2f} M  train {row['train_trials_per_s']:6.1f} trials/s  "
              f"eval {row['eval_trials_per_s']:7.1f} trials/s  {100 * row['utilisation']:.0f} %  "
              f"RSS {row['peak_rss_mb']:.0f} MiB", flush=True)
    report = {"benchmark": "model_size", "quick": args.quick, "machine": machine(), "threads": args.threads,
              "batch": args.batch, "neurons": args.neurons, "bins": args.bins, "steps": args.steps,
              "ceiling_gflop_per_s": ceiling, "amp": args.amp_mode, "amp_reason": args.amp_reason, "rows": rows}
    lines = [
        "# Throughput vs model size (CPU)",
        "",
        f"{report['machine']['cpu']}, {args.threads} threads, torch {report['machine']['torch']}. Batch {args.batch}, "
        f"{args.neurons} neurons, {args.bins} bins, five modalities, expanded static tokens, attention dropout 0. Train: "
        f"median of {args.steps} full steps (masks, forward, backward, AdamW); eval: one forward in inference mode. "
        f"Precision: the defaults' ({args.amp_reason}). Utilisation against the {'bf16' if args.amp_mode == 'bf16' else 'fp32'} matmul ceiling, {ceiling:.0f} GFLOP/s. Peak RSS: the process's, after the size ran.",
        "",
        "| size | layers | hidden | parameters (M) | train trials/s | eval trials/s | GFLOP/trial | utilisation | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['size']} | {r['layers']} | {r['hidden']} | {r['parameters_m']:.2f} | "
                     f"{r['train_trials_per_s']:.1f} | {r['eval_trials_per_s']:.1f} | {r['gflop_per_trial']:.2f} | "
                     f"{r['utilisation']:.0%} | {r['peak_rss_mb']:.0f} |")
    lines += ["", "The comparison with the reference's own code, run beside this project's at the single size on the same "
              "machine, is in train_step.md (bench_train_step --reference PATH).", ""]
    text = "\n".join(lines)
    print(text)
    print(f"wrote {write_results('model_size', report, text, args.quick)}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
