"""The shared encoder: pre-LayerNorm transformer blocks and a final LayerNorm (as the reference)."""

from __future__ import annotations

import torch
from torch import nn

from neds_framework.model.nn.attention import SelfAttention
from neds_framework.model.nn.dropout import Dropout


class Block(nn.Module):
    """x + Dropout(Attn(LN x)), then x + Dropout(MLP(LN x)) with a GELU MLP."""

    def __init__(self, hidden: int, heads: int, ffn: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden)
        self.attn = SelfAttention(hidden, heads, attention_dropout)
        self.mlp_norm = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, ffn), nn.GELU(), nn.Linear(ffn, hidden))
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), rope))
        return x + self.dropout(self.mlp(self.mlp_norm(x)))


class Transformer(nn.Module):
    def __init__(self, layers: int, hidden: int, heads: int, ffn: int, dropout: float, attention_dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(Block(hidden, heads, ffn, dropout, attention_dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        for layer in self.blocks:
            x = layer(x, rope)
        return self.norm(x)
