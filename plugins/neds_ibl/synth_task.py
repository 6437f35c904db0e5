"""The simulated IBL visual decision task: trials, wheel, cameras, and the covariates that drive the neurons.

Conventions are IBL's ALF ones (ibllib's extractors): times in seconds from session start;
contrasts from {1, .25, .125, .0625, 0} on the stimulus side and NaN on the other;
`choice` +1 is a clockwise (CW) wheel turn, which reports a stimulus on the LEFT, −1 a
counter-clockwise (CCW) turn reporting one on the RIGHT, 0 a no-go; `wheel.position` is in
radians with CCW positive, so a +1 choice drives the position down and a −1 choice up;
`probabilityLeft` is 0.5 for the first 90 trials, then alternating 0.2/0.8 blocks.

All sampling is vectorised over trials and events. The neural covariates live on a fine grid of
step `DT`; each is piecewise constant on it, which is what makes the ground truth exact.

The covariates (COVARIATES; fixed units, so a region's weights mean the same in every session):

    stimulus            √(right contrast) × a fast visual transient (50 ms latency, ~80 ms decay).
                        The probes sit in the LEFT hemisphere: neurons see the contralateral
                        (right) stimulus only; a left stimulus evokes nothing.
    stimulus_sustained  √(right contrast) × a sustained response (40 ms latency, 0.8 s decay,
                        tapered to 0 at 1.5 s)
    choice              ±1 (sign of `choice`) ramp from 0.3 s before movement onset to a peak
                        just after it, then a 250 ms decay: direction-selective premotor activity
    movement            the same event unsigned, earlier and briefer (0.5 s ramp, 150 ms decay):
                        non-selective movement preparation
    block               (probabilityLeft − 0.5) / 0.3 ∈ {−1, 0, 1} over each whole trial
    wheel, whisker      wheel speed / SPEED_SCALE; the whisking signal (follows running + bouts)
    latent_fast/_mid/_slow  independent AR(1) processes, τ = LATENT_TAUS (0.2, 2, 10 s),
                        standardised over the session (mean 0, SD 1), independent of everything
                        else: shared population dynamics (the slow one is trial-to-trial gain:
                        arousal, engagement)

Which of these a model sees (OBSERVED: choice, movement, block, wheel, whisker are functions of
the behaviour it is given), and which it does not (the stimulus, whose side and contrast are
never shown, and the latents), is what the behaviour-only oracle (synth_spikes) builds on; the
stimulus part is described by `HiddenStimulus`.
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.signal import lfilter, oaconvolve
from scipy.special import ndtr

DT = 0.005  # fine grid step (s): covariates and firing rates are piecewise constant on it
COVARIATES = (
    "stimulus", "stimulus_sustained", "choice", "movement", "block", "wheel", "whisker",
    "latent_fast", "latent_mid", "latent_slow",
)
STIMULUS_COVARIATES = ("stimulus", "stimulus_sustained")  # hidden: side and contrast are never shown
OBSERVED_COVARIATES = ("choice", "movement", "block", "wheel", "whisker")  # functions of the shown behaviour
LATENT_COVARIATES = ("latent_fast", "latent_mid", "latent_slow")  # hidden: shared population dynamics
LATENT_TAUS = (0.2, 2.0, 10.0)  # s
STIMULUS_SUPPORT = 1.5  # s: stimulus kernels are 0 after this; < the 2.05 s minimum between two stimOns

CONTRASTS = np.array([1.0, 0.25, 0.125, 0.0625, 0.0])
CONTRAST_P = np.array([2.0, 2.0, 2.0, 2.0, 1.0]) / 9.0  # zero contrast half as often, as in IBL's biased task
UNBIASED_TRIALS = 90
LAPSE, NOGO_P, PSYCHOMETRIC_WIDTH, PRIOR_SHIFT = 0.05, 0.015, 0.12, 0.12
BLOCK_MIN, BLOCK_MAX, BLOCK_SCALE = 20, 100, 60.0  # IBL: exponential(60) truncated to [20, 100]: mean ~51

WHEEL_TICK = 2 * np.pi / 4096  # 1024-line rotary encoder read in X4 mode: IBL's position resolution
WHEEL_CLOCK = 0.001  # the encoder is polled at 1 kHz; a sample is written only when the tick count changes
SPEED_SCALE = 2.0  # rad/s: a typical peak turning speed, the wheel covariate's unit

SESSION_LEAD = 10.0  # s of spontaneous activity before the first trial, and after the last
CAMERA_FS = {"left": 60.0, "right": 150.0, "body": 30.0}


@attrs.frozen
class Task:
    """One simulated session's behaviour and the neural covariates derived from it."""

    trials: dict  # ALF trial attributes, one value per trial (NaN where IBL would have NaN)
    wheel: dict  # {'wheel': {position, timestamps}, 'wheelMoves': {intervals, peakAmplitude}}
    cameras: dict  # {'left': (times, ROIMotionEnergy), 'right': ..., 'body': ...}
    covariates: np.ndarray  # (len(COVARIATES), n_steps) float32, in fixed units (see _covariates)
    duration: float  # session length (s); the grid is k * DT for k < n_steps
    stimulus: HiddenStimulus  # what a model cannot see of the stimulus covariates, for the behaviour oracle

    @property
    def n_steps(self) -> int:
        return self.covariates.shape[1]


@attrs.frozen
class HiddenStimulus:
    """The stimulus covariates as the behaviour-only oracle marginalises them.

    Trial i's stimulus covariates are `value · kernels[c, l]` at grid step `step[i] + l`
    (0 ≤ l < kernels.shape[1]); supports of different trials never overlap. `value` is √(right
    contrast), one of `values` (one per (side, contrast) hypothesis), and `posterior[i, j]` is
    P(hypothesis j | trial i's choice and block prior) by Bayes from the simulator's own prior
    (side ~ probabilityLeft, contrast ~ CONTRAST_P) and psychometric curve: exactly what a model
    that sees choice and block, but not the stimulus, can know about it (nothing else a model
    sees depends on the stimulus).
    """

    step: np.ndarray  # (n_trials,) int64: grid step of each trial's (true) stimulus onset
    kernels: np.ndarray  # (len(STIMULUS_COVARIATES), L) float32, peak 1
    values: np.ndarray  # (n_hypotheses,) √(right contrast) of each (side, contrast) hypothesis
    posterior: np.ndarray  # (n_trials, n_hypotheses) float64, rows sum to 1


@attrs.frozen
class _Moves:
    """What the mouse really did in each trial, including what the ALF table hides (NaN)."""

    onset: np.ndarray  # movement onset; NaN on no-go trials
    duration: np.ndarray  # time from onset to the end of the turn
    amplitude: np.ndarray  # signed wheel displacement (rad), CCW positive
    true_stim_on: np.ndarray  # stimulus onset, also where the photodiode 'missed' it


# --------------------------------------------------------------------------------------------- trials


def _block_priors(rng: np.random.Generator, n: int) -> np.ndarray:
    """0.5 for the unbiased start, then alternating 0.2/0.8 blocks of truncated-exponential length."""
    n_blocks = max(n - UNBIASED_TRIALS, 0) // BLOCK_MIN + 1
    # Inverse CDF of an exponential truncated to [BLOCK_MIN, BLOCK_MAX]: no rejection loop.
    span = 1.0 - np.exp(-(BLOCK_MAX - BLOCK_MIN) / BLOCK_SCALE)
    lengths = np.rint(BLOCK_MIN - BLOCK_SCALE * np.log1p(-rng.random(n_blocks) * span)).astype(int)
    first_left = rng.random() < 0.5
    block = np.searchsorted(np.cumsum(lengths), np.arange(max(n - UNBIASED_TRIALS, 0)), side="right")
    biased = np.where((block % 2 == 0) == first_left, 0.8, 0.2)
    return np.concatenate([np.full(min(n, UNBIASED_TRIALS), 0.5), biased])


def p_report_left(signed_left: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """The psychometric curve: P(choice +1, 'left' | go) from the left-positive contrast and the block prior."""
    bias = PRIOR_SHIFT * (prior - 0.5) / 0.3  # a 0.8 block shifts the curve by 12 % contrast towards 'left'
    return LAPSE + (1 - 2 * LAPSE) * ndtr((signed_left + bias) / PSYCHOMETRIC_WIDTH)


def _choices(rng: np.random.Generator, left: np.ndarray, contrast: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Psychometric choice (p_report_left), then a rare no-go independent of everything."""
    p_left = p_report_left(np.where(left, contrast, -contrast), prior)
    choice = np.where(rng.random(left.size) < p_left, 1.0, -1.0)  # +1 (CW) reports left
    choice[rng.random(left.size) < NOGO_P] = 0.0  # rare no-go: the 60 s response window runs out
    return choice


def stimulus_posterior(choice: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(√ right contrast per hypothesis, (n_trials, n_hypotheses) posterior given choice and prior).

    Hypotheses are (side, contrast) pairs: left × CONTRASTS, then right × CONTRASTS. By Bayes
    from the generative model in _trials: P(left) = probabilityLeft, P(contrast) = CONTRAST_P,
    P(choice | side, contrast, prior) from p_report_left (a no-go, independent of the stimulus,
    leaves the prior). Reaction times, wheel turns and whisking do not depend on the stimulus,
    so this is the stimulus's exact conditional given all the behaviour a model sees.
    """
    left = np.repeat([True, False], CONTRASTS.size)
    contrast = np.tile(CONTRASTS, 2)
    values = np.where(left, 0.0, np.sqrt(contrast))
    prior = np.asarray(prior, dtype=np.float64)[:, None]
    p_side = np.where(left[None, :], prior, 1.0 - prior)
    p_left = p_report_left(np.where(left, contrast, -contrast)[None, :], prior)
    choice = np.asarray(choice)[:, None]
    likelihood = np.where(choice > 0, p_left, np.where(choice < 0, 1.0 - p_left, 1.0))
    joint = p_side * np.tile(CONTRAST_P, 2)[None, :] * likelihood
    return values, joint / joint.sum(axis=1, keepdims=True)


def _reaction_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Lognormal (median 0.3 s) plus the odd trials NEDS's filters drop: > 10 s and anticipatory."""
    rt = np.exp(rng.normal(np.log(0.3), 0.7, n))
    kind = rng.random(n)
    slow, early = kind < 0.015, (kind >= 0.015) & (kind < 0.03)
    rt[slow] = rng.uniform(10.5, 40.0, slow.sum())
    rt[early] = -rng.uniform(0.02, 0.3, early.sum())  # moved before the stimulus appeared
    return rt


def _trials(rng: np.random.Generator, n: int) -> tuple[dict, _Moves]:
    prior = _block_priors(rng, n)
    left = rng.random(n) < prior  # the stimulus side follows the block prior
    contrast = rng.choice(CONTRASTS, size=n, p=CONTRAST_P)
    choice = _choices(rng, left, contrast, prior)
    nogo = choice == 0
    feedback = np.where(choice == np.where(left, 1.0, -1.0), 1.0, -1.0)

    # Trial timeline: ITI start → (mouse holds still: extra wait + quiescence) → stimOn = goCue →
    # movement → response = feedback → stimulus stays 1 s (correct) or 2 s (error) → ITI end.
    quiescence = 0.2 + np.clip(rng.exponential(0.35, n), 0.2, 0.5)  # IBL: 0.4–0.7 s
    wait = np.minimum(rng.exponential(0.8, n), 10.0)  # fidgets restart the quiescence timer
    rt = _reaction_times(rng, n)
    move_duration = rng.uniform(0.15, 0.5, n)
    response_delay = np.where(nogo, 60.0, np.maximum(rt + move_duration, 0.05))
    stim_shown = np.where(feedback > 0, 1.0, 2.0)
    iti = 0.5 + rng.uniform(0.0, 0.1, n)
    length = 0.1 + wait + quiescence + response_delay + stim_shown + iti
    start = SESSION_LEAD + np.concatenate([[0.0], np.cumsum(length)[:-1]])
    stim_on = start + 0.1 + wait + quiescence
    response = stim_on + response_delay
    stim_off = response + stim_shown

    first_movement = np.where(nogo, np.nan, stim_on + rt)
    table_stim_on = stim_on.copy()
    kind = rng.random(n)
    first_movement[kind < 0.01] = np.nan  # movement onset not detected, although the mouse moved
    table_stim_on[kind > 0.995] = np.nan  # photodiode missed the stimulus
    reward = rng.choice([1.5, 2.0, 2.5, 3.0])  # µl, fixed for the session as in the rig settings
    trials = {
        "intervals_0": start,
        "intervals_1": stim_off + iti,
        "stimOn_times": table_stim_on,
        "goCue_times": stim_on + rng.uniform(0.0005, 0.003, n),
        "response_times": response,
        "firstMovement_times": first_movement,
        "feedback_times": response + rng.uniform(0.0, 0.001, n),
        "contrastLeft": np.where(left, contrast, np.nan),
        "contrastRight": np.where(left, np.nan, contrast),
        "probabilityLeft": prior,
        "choice": choice,
        "feedbackType": feedback,
        "rewardVolume": np.where(feedback > 0, reward, 0.0),
        "stimOff_times": stim_off,
        "quiescencePeriod": quiescence,
    }
    # A turn overshoots the 0.28 rad response threshold a little; CCW (+) for choice −1.
    amplitude = np.where(nogo, 0.0, -choice * rng.uniform(0.3, 0.6, n))
    moves = _Moves(onset=np.where(nogo, np.nan, stim_on + rt), duration=move_duration * 1.6, amplitude=amplitude, true_stim_on=stim_on)
    return trials, moves


# ---------------------------------------------------------------------------------------------- wheel


def _fidgets(rng: np.random.Generator, trials: dict, duration: float) -> tuple[np.ndarray, ...]:
    """Small spontaneous turns, only where the task allows them: between feedback and the next quiescence."""
    onset = np.sort(rng.uniform(0.0, duration, rng.poisson(0.25 * duration)))
    length = rng.uniform(0.15, 0.4, onset.size)
    amplitude = rng.normal(0.0, 0.04, onset.size)
    nxt = np.searchsorted(trials["goCue_times"], onset)  # the next trial (goCue ≈ stimOn, never NaN)
    lo = np.concatenate([[0.0], trials["feedback_times"]])[nxt]
    hi = np.concatenate([trials["goCue_times"] - trials["quiescencePeriod"], [duration]])[nxt]
    keep = (onset >= lo) & (onset + length <= hi)
    return onset[keep], length[keep], amplitude[keep]


def _velocity(onset: np.ndarray, length: np.ndarray, amplitude: np.ndarray, n_steps: int) -> np.ndarray:
    """Sum of sin² velocity bumps on the grid, each integrating to its amplitude."""
    steps = np.ceil(length / DT).astype(int) + 1
    first = np.floor(onset / DT).astype(int)
    event = np.repeat(np.arange(onset.size), steps)
    step = np.repeat(first, steps) + (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps))
    phase = np.clip(((step + 0.5) * DT - onset[event]) / length[event], 0.0, 1.0)
    value = amplitude[event] * 2.0 / length[event] * np.sin(np.pi * phase) ** 2
    ok = step < n_steps
    return np.bincount(step[ok], weights=value[ok], minlength=n_steps)


def _encoder_samples(rng: np.random.Generator, velocity: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """What IBL's rotary encoder writes: a sample at each tick change, so dense while turning, none at rest."""
    position = np.concatenate([[0.0], np.cumsum(velocity) * DT])  # at the grid edges k * DT
    clock = np.arange(0.0, duration, WHEEL_CLOCK)
    ticks = np.rint(np.interp(clock, np.arange(position.size) * DT, position) / WHEEL_TICK)
    change = np.flatnonzero(np.diff(ticks)) + 1
    idx = np.concatenate([[0], change])
    stamps = clock[idx] + rng.uniform(0.0, WHEEL_CLOCK, idx.size)  # sub-ms jitter keeps the order
    return ticks[idx] * WHEEL_TICK, stamps


def _wheel(rng: np.random.Generator, trials: dict, moves: _Moves, duration: float, n_steps: int) -> tuple[np.ndarray, dict]:
    moved = np.isfinite(moves.onset)
    f_onset, f_length, f_amp = _fidgets(rng, trials, duration)
    onset = np.concatenate([moves.onset[moved], f_onset])
    length = np.concatenate([moves.duration[moved], f_length])
    amplitude = np.concatenate([moves.amplitude[moved], f_amp])
    velocity = _velocity(onset, length, amplitude, n_steps)
    position, stamps = _encoder_samples(rng, velocity, duration)
    # IBL's movement detector misses turns below a few ticks.
    detected = np.abs(amplitude) >= 8 * WHEEL_TICK
    order = np.argsort(onset[detected], kind="stable")
    alf = {
        "wheel": {"position": position, "timestamps": stamps},
        "wheelMoves": {
            "intervals": np.stack([onset, onset + length], axis=1)[detected][order],
            "peakAmplitude": amplitude[detected][order],
        },
    }
    return velocity, alf


# ------------------------------------------------------------------------------------------ covariates


def _events(times: np.ndarray, weights: np.ndarray, kernel: np.ndarray, n_steps: int) -> np.ndarray:
    """Impulses at `times` (weighted) convolved with `kernel` sampled on the grid."""
    ok = np.isfinite(times) & (weights != 0)
    impulses = np.bincount(np.floor(times[ok] / DT).astype(int), weights=weights[ok], minlength=n_steps)[:n_steps]
    return oaconvolve(impulses, kernel)[:n_steps]


def _taper(k: np.ndarray, t: np.ndarray, end: float, width: float = 0.3) -> np.ndarray:
    """`k` brought smoothly to 0 over the last `width` s before `end` (raised cosine)."""
    ramp = np.clip((end - t) / width, 0.0, 1.0)
    return k * (0.5 - 0.5 * np.cos(np.pi * ramp))


def stimulus_kernels() -> np.ndarray:
    """(2, L) the fast transient and the sustained response on the grid, each with peak 1, 0 beyond STIMULUS_SUPPORT."""
    t = np.arange(0.0, STIMULUS_SUPPORT, DT) + DT / 2
    fast = np.maximum(t - 0.05, 0.0)
    fast = (1.0 - np.exp(-fast / 0.01)) * np.exp(-fast / 0.08)
    slow = np.maximum(t - 0.04, 0.0)
    slow = _taper((1.0 - np.exp(-slow / 0.03)) * np.exp(-slow / 0.8), t, STIMULUS_SUPPORT)
    return np.stack([fast / fast.max(), slow / slow.max()]).astype(np.float32)


def _ramp_kernel(rise: float, decay: float) -> np.ndarray:
    """A quadratic ramp from 0 to peak 1 over `rise` s, then an exponential decay with time constant `decay`."""
    t = np.arange(0.0, rise + 6 * decay, DT) + DT / 2
    return np.where(t < rise, (t / rise) ** 2, np.exp(-(t - rise) / decay))


def _smooth_noise(rng: np.random.Generator, n_steps: int, tau: float) -> np.ndarray:
    """Stationary AR(1) noise with time constant `tau` s and unit standard deviation from the first step on."""
    a = np.exp(-DT / tau)
    start = rng.normal()  # the stationary distribution: no warm-up with a lower variance
    return lfilter([np.sqrt(1.0 - a * a)], [1.0, -a], rng.normal(size=n_steps), zi=[a * start])[0]


def _latent(rng: np.random.Generator, n_steps: int, tau: float) -> np.ndarray:
    """A shared latent: AR(1) noise (`_smooth_noise`) standardised over the session (mean 0, SD 1 exactly).

    Standardising keeps a session's realised latent from shifting its neurons' mean rates, which a
    model could learn from the training trials but the behaviour oracle cannot know; each step is
    still N(0, 1) up to O(tau / session length).
    """
    x = _smooth_noise(rng, n_steps, tau)
    return (x - x.mean()) / x.std()


def _whisking(rng: np.random.Generator, speed: np.ndarray) -> np.ndarray:
    """Whisking: follows running (lagged, smoothed) plus spontaneous bouts; ~[0, 1.5]."""
    kernel = np.exp(-np.arange(0.0, 1.5, DT) / 0.3)
    movement = oaconvolve(speed, kernel / kernel.sum())[: speed.size]
    spontaneous = np.maximum(_smooth_noise(rng, speed.size, 1.0) - 0.5, 0.0)
    return 0.8 * movement / SPEED_SCALE + 0.4 * spontaneous


def _covariates(rng: np.random.Generator, trials: dict, moves: _Moves, speed: np.ndarray, whisking: np.ndarray) -> tuple[np.ndarray, HiddenStimulus]:
    """The neural covariates (module docstring), in COVARIATES order, and their hidden stimulus part."""
    n_steps = speed.size
    contra = np.sqrt(np.nan_to_num(trials["contrastRight"]))  # left-hemisphere neurons: the right stimulus
    kernels = stimulus_kernels()
    stimulus = [_events(moves.true_stim_on, contra, k, n_steps) for k in kernels]
    # Premotor ramps, timed by movement onset: direction-selective (signed) and not (unsigned).
    choice_lead, move_lead = 0.3, 0.5
    choice = _events(moves.onset - choice_lead, trials["choice"], _ramp_kernel(choice_lead + 0.1, 0.25), n_steps)
    movement = _events(moves.onset - move_lead, np.ones_like(moves.onset), _ramp_kernel(move_lead + 0.05, 0.15), n_steps)
    trial_of_step = np.searchsorted(trials["intervals_0"], np.arange(n_steps) * DT, side="right") - 1
    block = np.where(trial_of_step >= 0, (trials["probabilityLeft"][np.maximum(trial_of_step, 0)] - 0.5) / 0.3, 0.0)
    latents = [_latent(rng, n_steps, tau) for tau in LATENT_TAUS]
    values, posterior = stimulus_posterior(trials["choice"], trials["probabilityLeft"])
    hidden = HiddenStimulus(step=np.floor(moves.true_stim_on / DT).astype(np.int64), kernels=kernels, values=values, posterior=posterior)
    covariates = np.stack([*stimulus, choice, movement, block, speed / SPEED_SCALE, whisking, *latents]).astype(np.float32)
    return covariates, hidden


# --------------------------------------------------------------------------------------------- cameras


def _camera(rng: np.random.Generator, view: str, signal: np.ndarray, duration: float, offset: float, gain: float, noise: float):
    """Frame times at the view's rate (small jitter) and ROI motion energy tracking `signal`."""
    fs = CAMERA_FS[view]
    times = np.arange(rng.uniform(0.0, 0.5), duration, 1.0 / fs)
    times += rng.uniform(-2e-4, 2e-4, times.size)  # frame-clock jitter, < half a frame: order kept
    value = np.interp(times, (np.arange(signal.size) + 0.5) * DT, signal)
    energy = offset + gain * value + noise * rng.standard_normal(times.size)
    return times, np.maximum(energy, 0.0).astype(np.float32)


def simulate_task(rng: np.random.Generator, n_trials: int) -> Task:
    trials, moves = _trials(rng, n_trials)
    duration = float(np.ceil(trials["intervals_1"][-1] + SESSION_LEAD))
    n_steps = int(round(duration / DT))
    velocity, wheel = _wheel(rng, trials, moves, duration, n_steps)
    speed = np.abs(velocity)
    whisking = _whisking(rng, speed)
    covariates, hidden = _covariates(rng, trials, moves, speed, whisking)
    # Left and right cameras see the same whisker pad with different ROI sizes, gains and noise, so a
    # reader can tell which was loaded; the body camera sees running.
    cameras = {
        "left": _camera(rng, "left", whisking, duration, 1500.0, 6000.0, 300.0),
        "right": _camera(rng, "right", whisking, duration, 900.0, 3500.0, 450.0),
        "body": _camera(rng, "body", speed / SPEED_SCALE, duration, 4000.0, 9000.0, 600.0),
    }
    return Task(trials=trials, wheel=wheel, cameras=cameras, covariates=covariates, duration=duration, stimulus=hidden)
