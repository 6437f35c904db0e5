"""Which reduced precision a stage computes in: the recipe's ``amp`` setting resolved for the device.

``auto`` (the default) picks bf16 autocast where the hardware multiplies bf16 natively (a CUDA
device that supports it; a CPU with AVX512-BF16 or AMX, where bf16 matmuls run about 4x fp32)
and fp32 everywhere else, because emulated bf16 is slower than fp32. Weights, gradients and the
optimiser's state stay fp32 either way; autocast runs the matmuls in bf16.
"""

from __future__ import annotations

import contextlib

import torch

from neds_framework.engine.settings import AMP_MODES
from neds_framework.errors import NedsError


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles)."""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def resolve_amp(mode: str, device: torch.device, key: str = "train.amp") -> tuple[str, str]:
    """(off | bf16 | fp16, why) for ``mode`` on ``device``; refuses what the device cannot run."""
    if mode not in AMP_MODES:
        raise NedsError(f"{key}: expected one of {', '.join(AMP_MODES)}, got {mode!r}")
    if mode == "fp16" and device.type == "cpu":
        raise NedsError(f"{key}: fp16 autocast is for GPUs; on CPU use amp: bf16 (or auto)")
    if mode != "auto":
        return mode, f"{key}: {mode}"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"{key}: auto chose bf16 (the GPU supports it)"
        return "off", f"{key}: auto chose fp32 (this GPU has no bf16)"
    if device.type == "cpu" and cpu_has_bf16():
        return "bf16", f"{key}: auto chose bf16 (this CPU has native bf16: AVX512-BF16/AMX)"
    return "off", f"{key}: auto chose fp32 (no native bf16 on {device.type}; set amp: bf16 to force it)"


def autocast_factory(mode: str, device: torch.device):
    """A zero-argument callable giving the autocast context of a resolved mode."""
    if mode == "off":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
