"""Dropout whose keep-mask comes from random bytes on CPU.

Each element is kept with probability 1 − p' and kept ones are scaled by 1 / (1 − p'), as in
`torch.nn.Dropout`, where p' is p rounded to a multiple of 1/256 (0.1 → 26/256 = 0.1016, 0.4 →
0.398): the mask is drawn as random bytes, eight per 64-bit draw, about ten times faster than
`torch.rand` here and thirty times faster than the `bernoulli_` that `nn.Dropout` uses on CPU
(benchmarks/results/train_step.md). On other devices the native (fused) dropout is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BYTE_LEVELS = 256


def quantised_rate(p: float) -> float:
    """The dropout rate applied on CPU for `p`: the nearest multiple of 1/256."""
    return round(p * BYTE_LEVELS) / BYTE_LEVELS


def keep_mask(shape: torch.Size, p: float, dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """0 where dropped and 1 / (1 − p') where kept (p' = quantised_rate(p)), in `dtype`."""
    threshold = round(p * BYTE_LEVELS)
    n = shape.numel()
    # random_() on int64 leaves each word's top bit 0; the full range makes all eight bytes uniform.
    words = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    random_bytes = words.view(torch.uint8)[:n].view(shape)
    kept = random_bytes >= threshold
    out = torch.empty(shape, dtype=dtype) if out is None else out
    return out.copy_(kept).mul_(BYTE_LEVELS / (BYTE_LEVELS - threshold))


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    return x * keep_mask(x.shape, p, x.dtype)


class Dropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
