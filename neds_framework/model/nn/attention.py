"""Multi-head self-attention on PyTorch's fused scaled-dot-product attention.

No attention mask: every token sees every other, as in the reference. Attention dropout and the
fused kernel do not mix on CPU: with dropout > 0, `scaled_dot_product_attention` falls back to an
unfused path that draws a Bernoulli mask over every (head, query, key), most of the reference's
step time (neds-facts.md §11). So on CPU, when training with attention dropout, this module runs
that unfused path itself with the faster `dropout` of this package; everywhere else (no attention
dropout, evaluation, GPUs, whose fused kernels take dropout) it calls the fused function.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neds_framework.model.nn.dropout import dropout
from neds_framework.model.nn.rotary import apply_rotary


def _attention_with_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float) -> torch.Tensor:
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    return dropout(scores.softmax(dim=-1), p, training=True) @ v


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not a multiple of the {heads} heads")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, length, hidden = x.shape
        # One matmul for q, k and v; (3, B, heads, L, head_dim) views of its output.
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        p = self.dropout if self.training else 0.0
        if p > 0.0 and x.device.type == "cpu":
            y = _attention_with_dropout(q, k, v, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(b, length, hidden))
