"""The simulated IBL task: trials, wheel, cameras, and the covariates that drive the neurons.

Everything is drawn from one numpy Generator and built on a fine time grid (`DT`), vectorised
over trials: events become impulse trains, impulse trains are convolved with kernels.
Conventions follow IBL's ALF data: times in seconds from session start; contrasts from
{1, .25, .125, .0625, 0} on the stimulus side and NaN on the other; choice −1 / +1 / 0 (no-go),
where −1 (a counter-clockwise turn) reports a stimulus on the right and +1 one on the left;
probabilityLeft 0.5 for the first 90 trials, then 0.2/0.8 blocks.
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.signal import fftconvolve

DT = 0.01  # fine grid step (s): covariates and firing rates are piecewise constant on it
CONTRASTS = np.array([1.0, 0.25, 0.125, 0.0625, 0.0])
UNBIASED_TRIALS = 90
COVARIATES = ("stimulus", "choice", "block", "wheel", "whisker", "latent")


@attrs.frozen
class Task:
    trials: dict  # ALF trial attributes, one value per trial
    wheel: dict  # ALF wheel (position, timestamps) and wheelMoves (intervals, peakAmplitude)
    cameras: dict  # {'left': (times, energy), 'right': ..., 'body': ...}
    grid: np.ndarray  # fine time grid (start of each step)
    covariates: np.ndarray  # (len(grid), len(COVARIATES)) float32, standardised


def _block_priors(rng: np.random.Generator, n: int) -> np.ndarray:
    """0.5 for the unbiased start, then alternating 0.2/0.8 blocks of 20–100 trials (mean ~50)."""
    prior = np.full(n, 0.5)
    lengths = np.clip(20 + rng.exponential(40, size=n // 20 + 2), 20, 100).astype(int)
    bounds = UNBIASED_TRIALS + np.concatenate([[0], np.cumsum(lengths)])
    first = rng.choice([0.2, 0.8])
    block_of_trial = np.searchsorted(bounds, np.arange(n), side="right") - 1
    biased = np.arange(n) >= UNBIASED_TRIALS
    prior[biased] = np.where(block_of_trial[biased] % 2 == 0, first, 1.0 - first)
    return prior


def _trial_table(rng: np.random.Generator, n: int) -> dict:
    prior = _block_priors(rng, n)
    left = rng.random(n) < prior  # the stimulus side follows the block prior
    contrast = rng.choice(CONTRASTS, size=n, p=[0.2, 0.2, 0.2, 0.2, 0.2])
    signed = np.where(left, -contrast, contrast)  # right positive
    # Psychometric choice: P(report left, choice +1) from contrast and the block prior.
    p_left = 1.0 / (1.0 + np.exp(-(-6.0 * signed + 2.5 * (prior - 0.5) * 2)))
    choice = np.where(rng.random(n) < p_left, 1.0, -1.0)
    nogo = rng.random(n) < 0.015
    choice[nogo] = 0.0
    correct = np.where(left, 1.0, -1.0)
    feedback = np.where(choice == correct, 1.0, -1.0)

    quiescence = np.clip(0.4 + rng.exponential(0.35, n), 0.4, 0.7)
    rt = np.exp(rng.normal(np.log(0.3), 0.6, n))
    # Some trials for NEDS's filters: very slow, anticipatory (negative RT), or movement undetected.
    odd = rng.random(n)
    rt[odd < 0.02] = rng.uniform(10.5, 30.0, (odd < 0.02).sum())
    rt[(odd >= 0.02) & (odd < 0.04)] = -rng.uniform(0.05, 0.2, ((odd >= 0.02) & (odd < 0.04)).sum())
    move_duration = rng.uniform(0.15, 0.6, n)
    response_delay = np.where(nogo, 60.0, np.maximum(rt, 0.0) + move_duration)
    feedback_to_end = np.where(feedback > 0, 1.0, 2.0)
    trial_length = 0.1 + quiescence + response_delay + feedback_to_end + rng.uniform(0.4, 0.8, n)
    start = 10.0 + np.concatenate([[0.0], np.cumsum(trial_length)[:-1]])
    stim_on = start + 0.1 + quiescence
    response = stim_on + response_delay
    first_movement = np.where(nogo, np.nan, stim_on + rt)
    first_movement[(odd >= 0.04) & (odd < 0.05)] = np.nan
    feedback_times = response + 0.001
    reward = np.where(feedback > 0, rng.choice([1.5, 2.0, 3.0]), 0.0)
    return {
        "intervals_0": start,
        "intervals_1": feedback_times + feedback_to_end,
        "quiescencePeriod": quiescence,
        "stimOn_times": stim_on,
        "goCue_times": stim_on + 1e-4,
        "firstMovement_times": first_movement,
        "response_times": response,
        "feedback_times": feedback_times,
        "stimOff_times": feedback_times + feedback_to_end,
        "contrastLeft": np.where(left, contrast, np.nan),
        "contrastRight": np.where(left, np.nan, contrast),
        "probabilityLeft": prior,
        "choice": choice,
        "feedbackType": feedback,
        "rewardVolume": reward,
        "_move_duration": move_duration,
    }


def _impulses(grid_len: int, times: np.ndarray, weights: np.ndarray) -> np.ndarray:
    out = np.zeros(grid_len)
    ok = np.isfinite(times) & np.isfinite(weights)
    np.add.at(out, np.clip((times[ok] / DT).astype(int), 0, grid_len - 1), weights[ok])
    return out


def _kernel(duration: float, shape: str) -> np.ndarray:
    t = np.arange(0, duration, DT)
    if shape == "transient":
        return (1 - np.exp(-t / 0.03)) * np.exp(-t / 0.15)
    return np.sin(np.pi * t / duration) ** 2  # a smooth bump


def _wheel(rng: np.random.Generator, trials: dict, grid: np.ndarray) -> tuple[np.ndarray, dict]:
    """Wheel velocity on the grid and its ALF files: turns in the choice direction, small fidgets."""
    n = len(grid)
    moved = np.isfinite(trials["firstMovement_times"]) & (trials["choice"] != 0)
    # Displacement ~0.3 rad (to threshold); choice +1 turns clockwise, i.e. negative position.
    amplitude = -trials["choice"] * rng.uniform(0.25, 0.4, len(moved)) * moved
    bump = _kernel(0.4, "bump")
    bump /= bump.sum() * DT  # unit area: velocity integrates to the displacement
    velocity = fftconvolve(_impulses(n, trials["firstMovement_times"], amplitude), bump)[:n]
    fidget_times = rng.uniform(grid[0], grid[-1], int((grid[-1] - grid[0]) / 8))
    velocity += fftconvolve(_impulses(n, fidget_times, rng.normal(0, 0.05, fidget_times.size)), bump)[:n]
    position = np.cumsum(velocity) * DT
    # The encoder reports irregularly: densely while moving, rarely at rest.
    moving = np.abs(velocity) > 0.05
    keep = np.where(moving, rng.random(n) < 0.6, rng.random(n) < 0.004)
    keep[[0, -1]] = True
    stamps = grid[keep] + rng.uniform(0, DT * 0.9, keep.sum())
    starts = np.concatenate([trials["firstMovement_times"][moved], fidget_times])
    order = np.argsort(starts)
    intervals = np.stack([starts, starts + 0.4], axis=1)[order]
    peaks = np.concatenate([amplitude[moved], np.zeros(fidget_times.size)])[order]
    return velocity, {
        "wheel": {"position": np.interp(stamps, grid, position), "timestamps": stamps},
        "wheelMoves": {"intervals": intervals, "peakAmplitude": peaks},
    }


def _latent(rng: np.random.Generator, n: int, tau: float = 1.0) -> np.ndarray:
    """A slow shared latent: white noise smoothed with an exponential kernel of `tau` seconds."""
    kernel = np.exp(-np.arange(0, 5 * tau, DT) / tau)
    return fftconvolve(rng.normal(size=n), kernel)[:n]


def _camera(rng: np.random.Generator, grid: np.ndarray, whisking: np.ndarray, fs: float, gain: float, noise: float):
    times = np.arange(grid[0], grid[-1], 1.0 / fs) + rng.normal(0, 2e-4, int(np.ceil((grid[-1] - grid[0]) * fs)))
    times = np.sort(times)
    energy = gain * np.interp(times, grid, whisking) + noise * np.abs(rng.normal(size=times.size)) + 50.0
    return times, energy.astype(np.float32)


def _standardise(x: np.ndarray) -> np.ndarray:
    return ((x - x.mean(axis=0)) / np.maximum(x.std(axis=0), 1e-9)).astype(np.float32)


def simulate_task(rng: np.random.Generator, n_trials: int) -> Task:
    trials = _trial_table(rng, n_trials)
    end = trials["intervals_1"][-1] + 5.0
    grid = np.arange(0.0, end, DT)
    n = len(grid)
    velocity, wheel = _wheel(rng, trials, grid)
    speed = np.abs(velocity)
    # Whisking follows movement with some lag, plus its own slow fluctuations.
    whisking = fftconvolve(speed, _kernel(0.3, "bump"))[:n] * DT / 0.15 + 0.3 * np.maximum(_latent(rng, n, 2.0), 0)
    signed = np.nan_to_num(trials["contrastRight"]) - np.nan_to_num(trials["contrastLeft"])
    stimulus = fftconvolve(_impulses(n, trials["stimOn_times"], signed + 0.3 * np.sign(signed)), _kernel(0.6, "transient"))[:n]
    # Choice signal ramps up around movement onset in the chosen direction.
    choice = fftconvolve(_impulses(n, trials["firstMovement_times"] - 0.15, trials["choice"]), _kernel(0.6, "bump"))[:n]
    block_of_bin = np.searchsorted(trials["intervals_0"], grid, side="right") - 1
    block = trials["probabilityLeft"][np.clip(block_of_bin, 0, n_trials - 1)] - 0.5
    covariates = _standardise(np.stack([stimulus, choice, block, speed, whisking, _latent(rng, n)], axis=1))
    cameras = {
        "left": _camera(rng, grid, whisking, 60.0, 400.0, 30.0),
        "right": _camera(rng, grid, whisking, 150.0, 250.0, 45.0),
        "body": _camera(rng, grid, speed, 30.0, 300.0, 40.0),
    }
    trials.pop("_move_duration")
    return Task(trials=trials, wheel=wheel, cameras=cameras, grid=grid, covariates=covariates)
