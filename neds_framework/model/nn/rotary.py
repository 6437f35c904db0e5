"""Rotary position embedding (RoPE) on queries and keys, from each token's time index.

Every modality's token of bin t gets the same rotation, so attention between two tokens depends
on how far apart in time they are, whatever their modalities (as in the reference). The rotation
pairs dimension i with i + d/2 of each head (the "rotate half" convention).
"""

from __future__ import annotations

import torch
from torch import nn


class Rotary(nn.Module):
    """Turns positions into the (cos, sin) tables that `apply_rotary` uses."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embedding needs an even head size, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (L, head_dim), for (L,) positions; computed once per forward and
        shared by all layers."""
        angles = positions.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., L, head_dim) queries or keys by the angles of their positions."""
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin
