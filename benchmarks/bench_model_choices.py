"""Quality cost of the two speed options: compact static tokens and no attention dropout.

Trains small NEDS models on a hand-made session (Poisson spikes driven by the trial's choice and
block, a wheel and a whisker signal following the same drive) with NEDS multi-task masking, and
scores held-out trials with the evaluation masks: encoding bits per spike, choice and block
accuracy, wheel R2. Arms differ in one setting each:

    compact, attention dropout 0     (both speed options)
    expanded, attention dropout 0    (the reference's n_bins tokens per static variable: the default)
    compact, attention dropout 0.4   (the reference's attention dropout)

    python -m benchmarks.bench_model_choices [--quick]     # full: about 30 minutes on one core

Writes benchmarks/results/model_choices.{json,md}. When generated IBL sessions can be read from
the store, `handmade_session` is the one function to replace.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from neds_framework.model.batch import Batch, session_features
from neds_framework.model.eval_masks import decoding_masks, encoding_masks
from neds_framework.model.neds import Neds
from neds_masking.multitask import NedsMultitaskMasker
from neds_modalities.parts import builtin_parts
from neds_modalities.plugin import MODALITIES as SPECS

FIVE = ("spikes", "wheel", "whisker", "choice", "block")

from ._results import write_results

ARMS = {
    "compact, attention dropout 0": ("compact", 0.0),
    "expanded, attention dropout 0": ("expanded", 0.0),
    "compact, attention dropout 0.4": ("compact", 0.4),
}


def handmade_session(trials: int, bins: int, neurons: int, seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(modalities, true log-rates). Block sets the prior of choice; choice sets the sign of a
    post-stimulus drive that tunes some neurons, the wheel and the whisker; block shifts the
    baseline of other neurons."""
    g = torch.Generator().manual_seed(seed)
    block = torch.randint(0, 3, (trials,), generator=g)
    choice = (torch.rand(trials, generator=g) < torch.tensor([0.2, 0.5, 0.8])[block]).long()
    t = torch.linspace(-0.5, 1.5, bins)
    onset = 0.1 + 0.3 * torch.rand(trials, 1, generator=g)  # reaction time
    bump = torch.sigmoid((t - onset) / 0.05) * torch.exp(-(t - onset).clamp(min=0) / 0.6)
    drive = (2.0 * choice - 1).unsqueeze(-1) * bump  # (K, T)
    # Half the neurons follow the drive, a third the block.
    tuning = torch.randn(neurons, generator=g) * 1.2 * (torch.rand(neurons, generator=g) < 0.5)
    block_tuning = torch.randn(neurons, generator=g) * 0.4 * (torch.rand(neurons, generator=g) < 0.33)
    bias = torch.randn(neurons, generator=g) * 0.5 - 1.6  # about 0.2 spikes per bin
    log_rates = bias + tuning * drive.unsqueeze(-1) + block_tuning * (block - 1.0)[:, None, None]
    values = {
        "spikes": torch.poisson(log_rates.exp(), generator=g),
        "wheel": drive + 0.5 * torch.randn(trials, bins, generator=g),
        "whisker": drive.abs() + 0.5 * torch.randn(trials, bins, generator=g),
        "choice": choice,
        "block": block,
    }
    return values, log_rates


def make_model(layout: str, attention_dropout: float, args) -> Neds:
    settings = Neds.Settings(layers=args.layers, hidden=args.hidden, heads=4, ffn=2 * args.hidden,
                             attention_dropout=attention_dropout)
    return Neds(settings, builtin_parts(FIVE, settings.hidden, args.bins, layout=layout))


def bits_per_spike(log_rates, counts, train_counts) -> float:
    """Poisson log-likelihood gain over each neuron's mean train rate, in bits per spike."""
    null = train_counts.mean(dim=(0, 1)).clamp(min=1e-6).log().expand_as(counts)

    def nll(x):
        return (x.exp() - counts * x).sum()
    return float((nll(null) - nll(log_rates)) / (counts.sum() * math.log(2)))


@torch.no_grad()
def evaluate(model: Neds, test: Batch, train_counts) -> dict:
    model.eval()
    enc = model(test, encoding_masks(test))
    dec = model(test, decoding_masks(test))
    predicted = model.predict(dec)
    wheel = test.values["wheel"]
    r2 = 1 - ((predicted["wheel"] - wheel) ** 2).sum() / ((wheel - wheel.mean()) ** 2).sum()
    return {
        "encoding_bps": bits_per_spike(enc.predictions["spikes"], test.values["spikes"], train_counts),
        "choice_accuracy": float((predicted["choice"] == test.values["choice"]).float().mean()),
        "block_accuracy": float((predicted["block"] == test.values["block"]).float().mean()),
        "wheel_r2": float(r2),
    }


def run_arm(layout: str, attention_dropout: float, seed: int, args) -> dict:
    data, log_rates = handmade_session(args.trials, args.bins, args.neurons, seed)
    n_train = args.trials * 3 // 4
    train = {k: v[:n_train] for k, v in data.items()}
    test = Batch("s", {k: v[n_train:] for k, v in data.items()}, SPECS)
    torch.manual_seed(seed)
    model = make_model(layout, attention_dropout, args)
    model.add_session("s", session_features(test.values))
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    masker = NedsMultitaskMasker()
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(args.steps):
        model.train()
        idx = torch.randint(0, n_train, (args.batch,), generator=g)
        batch = Batch("s", {k: v[idx] for k, v in train.items()}, SPECS)
        loss = model(batch, masker(batch, g)).loss
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    oracle = bits_per_spike(log_rates[n_train:], test.values["spikes"], train["spikes"])
    return {**evaluate(model, test, train["spikes"]), "true_rates_bps": oracle, "train_s": time.perf_counter() - start}


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [
        "# Static token layout and attention dropout: quality",
        "",
        f"Hand-made session ({a['trials']} trials, 3/4 train, {a['bins']} bins, {a['neurons']} neurons); "
        f"NEDS {a['layers']} layers, hidden {a['hidden']}; {a['steps']} AdamW steps of batch {a['batch']}, "
        f"multi-task masking; mean ± sd over seeds {report['seeds']}. Held-out trials, evaluation masks. "
        f"Train time on {a['threads']} thread(s).",
        "",
        "| arm | encoding bits/spike | choice acc | block acc | wheel R2 | train time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for arm, s in report["summary"].items():
        metrics = ("encoding_bps", "choice_accuracy", "block_accuracy", "wheel_r2")
        cells = [f"{s[k]['mean']:.3f} ± {s[k]['sd']:.3f}" for k in metrics]
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {s['train_s']['mean']:.0f} |")
    oracle = next(iter(report["summary"].values()))["true_rates_bps"]
    lines += ["", f"The true rates score {oracle['mean']:.3f} ± {oracle['sd']:.3f} bits/spike on the same trials "
              "(the ceiling of encoding)."]
    return "\n".join(lines + [""])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--bins", type=int, default=50)
    parser.add_argument("--neurons", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=1)  # tiny models: more threads barely help
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.steps = 1, 30
    torch.set_num_threads(args.threads)
    seeds = list(range(args.seeds))
    runs = {arm: [] for arm in ARMS}
    for seed in seeds:
        for arm, (layout, attention_dropout) in ARMS.items():
            runs[arm].append(run_arm(layout, attention_dropout, seed, args))
            print(f"seed {seed} {arm}: " + ", ".join(f"{k} {v:.3f}" for k, v in runs[arm][-1].items()), flush=True)
    summary = {
        arm: {k: {"mean": statistics.fmean(r[k] for r in rs), "sd": statistics.pstdev(r[k] for r in rs)} for k in rs[0]}
        for arm, rs in runs.items()
    }
    report = {"benchmark": "model_choices", "args": vars(args), "seeds": seeds, "runs": runs, "summary": summary}
    write_results("model_choices", report, markdown(report), args.quick)
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
