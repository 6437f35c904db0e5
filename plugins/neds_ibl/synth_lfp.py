"""Simulated raw LFP (Neuropixels 1.0 LF band, 2500 Hz) in genuine SpikeGLX files.

Written as `raw_ephys_data/probeXX/_spikeglx_ephysData_g0_t0.imecN.lf.{cbin,ch,meta}`, which is
what `SpikeSortingLoader.raw_electrophysiology(band='lf', stream=False)` opens (it needs the
mtscomp-compressed .cbin with its .ch, plus the .meta). Sample 0 is session time 0: there is no
clock offset to synchronise.

The signal is band-limited noise whose band power follows the task covariates, so LFP band-power
features carry information: theta (6–10 Hz, strongest in hippocampus) grows with wheel speed
and whisking; gamma (30–80 Hz, strongest in visual areas) grows with the stimulus transient,
which also evokes a negative potential there. A 1/f-like background sits under both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.signal import butter, lfilter, sosfilt

from neds_ibl.synth_task import COVARIATES, DT, Task

LFP_FS = 2500.0
LF_GAIN = 250  # NP1.0 LF gain
MAX_INT = 512  # NP1.0: 10-bit ADC
RANGE_V = 0.6
SAMPLE2VOLT = RANGE_V / MAX_INT / LF_GAIN  # the conversion spikeglx.Reader applies to LF channels

# Band amplitudes (V) per kind of region: (background, theta, gamma, stimulus-evoked potential).
_HIPPOCAMPUS, _VISUAL = {"CA1", "CA3", "DG"}, {"VISa", "VISam", "LGd"}
_AMPLITUDES = {"hippocampus": (40e-6, 80e-6, 8e-6, 0.0), "visual": (40e-6, 20e-6, 25e-6, 60e-6), "other": (40e-6, 15e-6, 8e-6, 10e-6)}


def lfp_channel_sites(n_channels: int) -> np.ndarray:
    """Probe sites recorded: one column (even sites), evenly spaced from tip to top, rows increasing."""
    if not 1 <= n_channels <= 192:
        raise ValueError(f"lfp_channels must be in [1, 192], got {n_channels}")
    return 2 * np.rint(np.linspace(0, 191, n_channels)).astype(int)


def _band_noise(rng: np.random.Generator, n: int, band: tuple[float, float]) -> np.ndarray:
    """Unit-variance Gaussian noise band-passed to `band` Hz."""
    sos = butter(3, band, btype="bandpass", fs=LFP_FS, output="sos")
    x = sosfilt(sos, rng.standard_normal(n))
    return (x / x.std()).astype(np.float32)


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f²-like noise above ~2 Hz: a leaky integrator of white noise, unit variance."""
    a = np.exp(-2 * np.pi * 2.0 / LFP_FS)
    x = lfilter([np.sqrt(1 - a * a)], [1.0, -a], rng.standard_normal(n))
    return x.astype(np.float32)


def simulate_lfp(rng: np.random.Generator, task: Task, site_beryl: np.ndarray, n_channels: int) -> np.ndarray:
    """(n_samples, n_channels + 1) int16 LF samples for the given sites, sync trace last."""
    n = int(task.duration * LFP_FS)
    step = np.minimum((np.arange(n) / LFP_FS / DT).astype(np.int64), task.n_steps - 1)
    cov = dict(zip(COVARIATES, task.covariates))
    theta_env = (1.0 + 1.5 * cov["wheel"][step] + 0.5 * cov["whisker"][step]).astype(np.float32)
    stim = np.abs(cov["stimulus"][step])
    gamma_env = 1.0 + 3.0 * stim
    theta = _band_noise(rng, n, (6.0, 10.0)) * theta_env
    gamma = _band_noise(rng, n, (30.0, 80.0)) * gamma_env
    shared = _background(rng, n)
    data = np.empty((n, n_channels + 1), dtype=np.int16)
    for c, beryl in enumerate(site_beryl):  # a handful of channels: one column at a time bounds memory
        kind = "hippocampus" if beryl in _HIPPOCAMPUS else "visual" if beryl in _VISUAL else "other"
        background, a_theta, a_gamma, a_evoked = _AMPLITUDES[kind]
        local = 0.6 * shared + 0.8 * _background(rng, n)  # volume conduction + local sources
        volts = background * local + a_theta * theta + a_gamma * gamma - a_evoked * stim
        data[:, c] = np.clip(np.rint(volts / SAMPLE2VOLT), -MAX_INT, MAX_INT - 1)
    data[:, -1] = (np.arange(n) // int(LFP_FS / 2)) % 2  # sync: a 1 Hz square wave on bit 0
    return data


def _meta_text(n_samples: int, sites: np.ndarray, probe_index: int, serial: int) -> str:
    """A SpikeGLX 3B2 (NP1.0) LF-band .meta listing only the saved channels, then the sync channel."""
    nc = sites.size + 1
    imro = "".join(f"({c} 0 0 500 {LF_GAIN})" for c in range(384))
    chan_map = "".join(f"(LF{c};{384 + c}:{k})" for k, c in enumerate(sites)) + f"(SY0;768:{sites.size})"
    shank_map = "".join(f"(0:{c % 2}:{c // 2}:1)" for c in sites)
    lines = {
        "acqApLfSy": "384,384,1",
        "appVersion": "20201103",
        "fileCreateTime": "2024-01-01T12:00:00",
        "fileName": f"_spikeglx_ephysData_g0_t0.imec{probe_index}.lf.bin",
        "fileSizeBytes": str(n_samples * nc * 2),
        "fileTimeSecs": repr(n_samples / LFP_FS),
        "firstSample": "0",
        "imAiRangeMax": repr(RANGE_V),
        "imAiRangeMin": repr(-RANGE_V),
        "imDatPrb_port": str(probe_index + 1),
        "imDatPrb_slot": "2",
        "imDatPrb_sn": str(serial),
        "imDatPrb_type": "0",
        "imSampRate": repr(LFP_FS),
        "nSavedChans": str(nc),
        "snsApLfSy": f"0,{sites.size},1",
        "snsSaveChanSubset": ",".join(str(384 + c) for c in sites) + ",768",
        "typeThis": "imec",
        "~imroTbl": f"(0,384){imro}",
        "~snsChanMap": f"(0,{sites.size},1){chan_map}",
        "~snsShankMap": f"(1,2,480){shank_map}",
    }
    return "".join(f"{k}={v}\n" for k, v in lines.items())


def write_raw_lfp(folder: Path, probe_index: int, data: np.ndarray, sites: np.ndarray, serial: int) -> Path:
    """Write the .meta and the mtscomp-compressed .cbin/.ch; returns the .cbin path."""
    import spikeglx

    folder.mkdir(parents=True, exist_ok=True)
    base = folder / f"_spikeglx_ephysData_g0_t0.imec{probe_index}.lf"
    Path(f"{base}.meta").write_text(_meta_text(data.shape[0], sites, probe_index, serial))
    data.tofile(f"{base}.bin")
    reader = spikeglx.Reader(f"{base}.bin")
    try:
        # No progress bars; mtscomp is lossless and the tests read the data back, so skip its re-check.
        return reader.compress_file(keep_original=False, quiet=True, check_after_compress=False)
    finally:
        reader.close()
