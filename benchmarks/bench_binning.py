"""Spike binning speed: neds_ibl.binning.bin_spikes against NEDS's per-trial bincount2D loop.

A seeded synthetic session the size of a real one (500 units at 8 Hz mean over 3600 s, about
14 M spikes; 600 trials, stimOn − 0.5 … + 1.5 s, 100 bins of 20 ms; about 10 % of consecutive
windows overlap) is binned
- by `bin_spikes` (vectorised over the session),
- by NEDS's loop (`get_spike_data_per_interval`, neds-facts.md §1.4): per trial a boolean mask over
  all spikes, `iblutil.numerical.bincount2D(xbin=0.02, xlim=[t_beg, t_end])` over the clusters
  present, placed with intersect1d and truncated to 100 bins (its extra window-end column dropped),
- by the same loop with the spikes selected by searchsorted (a stronger loop baseline).
The best of 3 runs is reported as spikes/s (session spikes / seconds) with the speed-up, the peak
memory each one allocates (tracemalloc, numpy included) and the process peak RSS. All three must
give identical counts: the loops bin by floor((t − t0)/w), which disagrees with bin_spikes' exact
edges only for a spike lying on an edge; the benchmark counts such spikes and reports them.

    python -m benchmarks.bench_binning            # full session: about 1-2 minutes on 2 cores
    python -m benchmarks.bench_binning --quick    # 10x smaller session, a few seconds

The full run writes benchmarks/results/binning.{json,md}.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
from iblutil.numerical import bincount2D

from neds_ibl.binning import bin_spikes

from ._results import machine, write_results

N_BINS, BIN_SIZE, PRE_S = 100, 0.02, 0.5
TARGET_SPEEDUP = 50.0


def make_session(units: int, duration_s: float, trials: int, seed: int = 0) -> dict:
    """Sorted spike times and clusters (log-normal rates, 8 Hz mean) and trial window starts."""
    rng = np.random.default_rng(seed)
    rates = rng.lognormal(mean=np.log(8.0) - 0.5, sigma=1.0, size=units)  # mean exp(mu + σ²/2) = 8 Hz
    per_unit = rng.poisson(rates * duration_s)
    clusters = np.repeat(np.arange(units, dtype=np.int64), per_unit)
    times = rng.uniform(0.0, duration_s, clusters.size)
    order = np.argsort(times, kind="stable")
    # Trial onsets 1.5 s + exponential (4.5 s mean) apart, squeezed into the recording.
    gaps = 1.5 + rng.exponential(4.5, trials)
    stim_on = 2.0 + np.cumsum(gaps) * (duration_s - 4.0) / gaps.sum()
    return {"times": times[order], "clusters": clusters[order], "starts": stim_on - PRE_S, "units": units}


def neds_loop(times, clusters, starts, units, select="mask"):
    """NEDS's get_spike_data_per_interval (one process), returned as (trials, bins, units)."""
    cluster_ids = np.arange(units)
    ends = starts + N_BINS * BIN_SIZE
    out = np.zeros((len(starts), units, N_BINS), dtype=np.float32)
    if select == "searchsorted":
        first, stop = np.searchsorted(times, starts), np.searchsorted(times, ends)
    for k, (t_beg, t_end) in enumerate(zip(starts, ends)):
        if select == "mask":
            inside = (times >= t_beg) & (times < t_end)
            t_cur, c_cur = times[inside], clusters[inside]
        else:
            t_cur, c_cur = times[first[k] : stop[k]], clusters[first[k] : stop[k]]
        if t_cur.size == 0:
            continue
        counts, _, present = bincount2D(t_cur, c_cur, xbin=BIN_SIZE, xlim=[t_beg, t_end])
        _, rows, _ = np.intersect1d(cluster_ids, present, return_indices=True)
        out[k, rows, :] = counts[:, :N_BINS]
    return out.transpose(0, 2, 1)


def spikes_on_edges(times, starts) -> int:
    """Spikes whose floor((t − t0)/w) bin disagrees with the exact edges t0 + k·w (outside timing)."""
    offsets = np.arange(N_BINS + 1) * BIN_SIZE
    n = 0
    for t0 in starts:
        t = times[np.searchsorted(times, t0) : np.searchsorted(times, t0 + offsets[-1])]
        n += int(np.sum(np.floor((t - t0) / BIN_SIZE) != np.searchsorted(t0 + offsets, t, side="right") - 1))
    return n


def measure(fn, repeats: int) -> dict:
    """Best-of-N wall time, then one more traced run for the memory it allocates."""
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - t)
    del result
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"best_s": min(seconds), "runs_s": seconds, "peak_alloc_mb": peak / 2**20, "result": result}


def markdown(report: dict) -> str:
    s = report["session"]
    lines = [
        "# Spike binning: vectorised bin_spikes vs NEDS's per-trial bincount2D loop",
        "",
        f"Session: {s['units']} units, {s['duration_s']:.0f} s, {s['spikes']:,} spikes, {s['trials']} trials "
        f"({s['overlapping_windows']} overlapping windows), 100 bins of 20 ms. Best of {report['repeats']}; "
        f"{report['machine']['cpus']} CPUs, numpy {report['machine']['numpy']}.",
        "",
        "| method | best (s) | spikes/s | speed-up of bin_spikes | peak allocated (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["methods"].items():
        lines.append(f"| {name} | {r['best_s']:.3f} | {r['spikes_per_s']:.3g} | {r['speedup']:.1f}x | {r['peak_alloc_mb']:.0f} |")
    lines += [
        "",
        f"Identical counts: {report['identical']} (spikes on an exact bin edge: {report['spikes_on_edges']}). "
        f"Process peak RSS: {report['peak_rss_mb']:.0f} MiB (includes the session itself).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 10x smaller session (360 s), no result files")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    duration, trials = (360.0, 60) if args.quick else (3600.0, 600)

    session = make_session(500, duration, trials)
    times, clusters, starts = session["times"], session["clusters"], session["starts"]
    n_spikes = len(times)
    overlapping = int(np.sum(np.diff(starts) < N_BINS * BIN_SIZE))
    print(f"session: {n_spikes:,} spikes, 500 units, {duration:.0f} s, {trials} trials ({overlapping} overlapping windows)", flush=True)

    methods = {
        "bin_spikes (vectorised)": lambda: bin_spikes(times, clusters, starts, N_BINS, BIN_SIZE, 500),
        "NEDS loop (mask + bincount2D)": lambda: neds_loop(times, clusters, starts, 500, "mask"),
        "loop (searchsorted + bincount2D)": lambda: neds_loop(times, clusters, starts, 500, "searchsorted"),
    }
    measured = {}
    for name, fn in methods.items():
        measured[name] = measure(fn, args.repeats)
        print(f"{name:34s} best {measured[name]['best_s']:.3f} s", flush=True)

    ours = measured["bin_spikes (vectorised)"]
    identical = all(np.array_equal(ours["result"], m["result"]) for m in measured.values())
    on_edges = spikes_on_edges(times, starts)
    report = {
        "benchmark": "binning",
        "quick": args.quick,
        "machine": machine(),
        "session": {"units": 500, "duration_s": duration, "spikes": n_spikes, "trials": trials, "overlapping_windows": overlapping},
        "repeats": args.repeats,
        "methods": {
            name: {
                "best_s": m["best_s"],
                "runs_s": m["runs_s"],
                "spikes_per_s": n_spikes / m["best_s"],
                "speedup": m["best_s"] / ours["best_s"],
                "peak_alloc_mb": m["peak_alloc_mb"],
            }
            for name, m in measured.items()
        },
        "identical": identical,
        "spikes_on_edges": on_edges,
        "output_dtype": str(ours["result"].dtype),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "target_speedup": TARGET_SPEEDUP,
    }
    for name, r in report["methods"].items():
        print(
            f"{name:34s} {r['spikes_per_s'] / 1e6:8.1f} M spikes/s  bin_spikes is {r['speedup']:6.1f}x faster  "
            f"peak alloc {r['peak_alloc_mb']:6.0f} MiB"
        )
    print(f"identical counts: {identical} (spikes on an exact edge: {on_edges}); peak RSS {report['peak_rss_mb']:.0f} MiB")
    print(f"wrote {write_results('binning', report, markdown(report), args.quick)}.json and .md")
    return 0 if identical else 1


if __name__ == "__main__":
    raise SystemExit(main())
